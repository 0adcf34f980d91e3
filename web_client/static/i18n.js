// The customer page's words in each language it speaks. The language comes from the
// banking app (#lang=zh), else the customer's earlier choice, else the browser's; it is
// sent with queue.join, so the customer is routed to tellers who speak it.

export const LANGUAGES = { en: "English", zh: "中文" };

const STRINGS = {
  en: {
    title: "Video teller",
    larger_text: "A+ Larger text",
    green_badge: "Green channel: priority service for senior customers",
    your_name: "Your name",
    birth_year: "Birth year",
    what_need: "What do you need?",
    bt_general: "A question",
    bt_card: "Get a new card",
    bt_password: "Reset my card password",
    bt_info: "Change my personal details",
    start: "Talk to a teller",
    waiting: "Please stay on this page. We will connect you as soon as a teller is free.",
    leave: "Leave the queue",
    consent_title: "May {teller} see your screen?",
    purpose: "Purpose:",
    consent_scope: "Only while you allow it, and only for this call. You can stop at any time.",
    allow: "Allow",
    deny: "Deny",
    shared_with: "Your screen is shared with {teller}.",
    stop_sharing: "Stop sharing",
    suggests: "Your teller suggests: {title}",
    open: "Open",
    not_now: "Not now",
    your_teller: "Your teller:",
    mute: "Mute", unmute: "Unmute",
    camera_off: "Camera off", camera_on: "Camera on",
    hangup: "Hang up",
    open_from_app: "Please open this page from your banking app.",
    no_teller: "No teller for this service is available right now. You can keep waiting or leave.",
    wait_under_minute: " Expected wait: under a minute.",
    wait_minutes: " Expected wait: about {n} minutes.",
    you_are_next: "You are next.",
    number_in_line: "You are number {n} in line.",
    about_to_answer: "A teller is about to answer.",
    connecting: "Connecting you to your teller...",
    connected: "You are connected.",
    reconnecting: "Your connection dropped. Reconnecting...",
    peer_reconnecting: "Your teller's connection dropped; please wait.",
    ended_thanks: "The call has ended. Thank you.",
    end_title: "Your call has ended",
    closed_title: "Video tellers are not available now",
    no_teller_hours: "When our video tellers work",
    opening_hours: "Opening hours:",
    next_open: "We open again on {when}.",
    closed_day: "closed",
    hours_zone: "Times are in the bank's time zone ({zone}).",
    check_devices: "Check my camera and microphone",
    mic_level: "Microphone",
    devices_ok: "Your camera and microphone work.",
    devices_speak: "You should see yourself. Say something to test the microphone.",
    devices_blocked: "The camera or microphone is blocked. Please allow them in your phone's settings.",
    devices_missing: "No camera or microphone was found.",
    transferring: "We are passing you to another teller. Please stay on this page.",
    reference: "Your reference number:",
    survey_question: "How was your call?",
    score_1: "1 Very poor", score_2: "2 Poor", score_3: "3 OK", score_4: "4 Good", score_5: "5 Very good",
    survey_comment: "Anything to tell us? (optional)",
    survey_send: "Send",
    survey_thanks: "Thank you for your feedback.",
    survey_pick: "Please choose a score from 1 to 5.",
    ended_reason: "The call ended ({reason}).",
    asks_screen: "{teller} asks to see your screen to {purpose}. Press Allow or Deny.",
    now_shared: "Your screen is now shared with {teller}.",
    step_of: "Step {step} of {steps}",
    identity_check: "Identity check",
    busy_try_again: "We cannot take you just now. Please try again in a moment.",
    // liveness prompts, by action (and release cues)
    calibrate: "Look straight at the camera",
    rest: "Look at the camera and keep still",
    blink_twice: "Blink twice",
    blink_three_times: "Blink three times",
    turn_left: "Turn your head to your left and hold",
    turn_right: "Turn your head to your right and hold",
    tilt_left: "Tilt your head towards your left shoulder and hold",
    tilt_right: "Tilt your head towards your right shoulder and hold",
    open_mouth: "Open your mouth wide and hold",
    smile: "Smile broadly and hold",
    release_turn: "Now look back at the camera",
    release_tilt: "Now straighten your head",
    release_open_mouth: "Now close your mouth",
    release_smile: "Now relax",
    speak_phrase: "Please read these numbers aloud",
    thank_you: "Thank you",
    check_finished: "Check finished",
    hint_come_closer: "Please move a little closer to the camera",
    hint_more_light: "Please move to a brighter place",
    hint_hold_still: "Please hold your phone still",
    hint_face_camera: "Please look straight at the camera",
    hint_alone_in_frame: "Please make sure only you are in the picture",
    location_ask: "For this service the bank must know where you are. Share your phone's location for this call?",
    location_share: "Share my location",
    location_failed: "Your location could not be read. Please allow it in your phone's settings.",
    script_index: "Statement {index} of {total}",
    script_confirm: "I confirm",
    script_question: "I have a question",
    otp_prompt: "Enter the {digits}-digit code we sent to your phone",
    otp_submit: "Confirm",
    otp_wrong: "That code is not right. Tries left: {n}.",
    otp_verified: "Code confirmed. Thank you.",
    otp_failed: "The code could not be confirmed. Your teller will help you.",
    otp_expired: "The code has expired. Your teller can send a new one.",
  },
  zh: {
    title: "视频柜员",
    larger_text: "A+ 大字模式",
    green_badge: "绿色通道：老年客户优先服务",
    your_name: "您的姓名",
    birth_year: "出生年份",
    what_need: "您要办理什么业务？",
    bt_general: "咨询问题",
    bt_card: "申请新卡",
    bt_password: "重置银行卡密码",
    bt_info: "修改个人信息",
    start: "联系柜员",
    waiting: "请留在此页面。柜员空闲后会立即为您接通。",
    leave: "退出排队",
    consent_title: "{teller} 可以查看您的屏幕吗？",
    purpose: "用途：",
    consent_scope: "仅在您允许期间、仅限本次通话。您可以随时停止。",
    allow: "允许",
    deny: "拒绝",
    shared_with: "您的屏幕正在共享给 {teller}。",
    stop_sharing: "停止共享",
    suggests: "柜员建议您：{title}",
    open: "打开",
    not_now: "暂不",
    your_teller: "您的柜员：",
    mute: "静音", unmute: "取消静音",
    camera_off: "关闭摄像头", camera_on: "打开摄像头",
    hangup: "挂断",
    open_from_app: "请从手机银行中打开此页面。",
    no_teller: "目前没有可以办理此业务的柜员。您可以继续等待，也可以退出。",
    wait_under_minute: "预计等待：不到一分钟。",
    wait_minutes: "预计等待：约 {n} 分钟。",
    you_are_next: "下一位就是您。",
    number_in_line: "您排在第 {n} 位。",
    about_to_answer: "柜员即将接听。",
    connecting: "正在为您接通柜员……",
    connected: "已接通。",
    reconnecting: "连接中断，正在重新连接……",
    peer_reconnecting: "柜员的连接中断了，请稍候。",
    ended_thanks: "通话已结束，谢谢您。",
    end_title: "通话已结束",
    closed_title: "现在不是视频柜员服务时间",
    no_teller_hours: "视频柜员的服务时间",
    opening_hours: "服务时间：",
    next_open: "下次开放时间：{when}。",
    closed_day: "不开放",
    hours_zone: "以上为银行所在时区的时间（{zone}）。",
    check_devices: "检查摄像头和麦克风",
    mic_level: "麦克风",
    devices_ok: "您的摄像头和麦克风工作正常。",
    devices_speak: "您应该能看到自己。请说几句话测试麦克风。",
    devices_blocked: "摄像头或麦克风被禁用，请在手机设置中允许使用。",
    devices_missing: "没有找到摄像头或麦克风。",
    transferring: "正在为您转接其他柜员，请不要离开本页面。",
    reference: "您的业务编号：",
    survey_question: "您对本次通话满意吗？",
    score_1: "1 很不满意", score_2: "2 不满意", score_3: "3 一般", score_4: "4 满意", score_5: "5 很满意",
    survey_comment: "还有什么想告诉我们的吗？（可不填）",
    survey_send: "提交",
    survey_thanks: "感谢您的反馈。",
    survey_pick: "请选择 1 到 5 分。",
    ended_reason: "通话已结束（{reason}）。",
    asks_screen: "{teller} 请求查看您的屏幕，用于：{purpose}。请选择“允许”或“拒绝”。",
    now_shared: "您的屏幕正在共享给 {teller}。",
    step_of: "第 {step} 步，共 {steps} 步",
    identity_check: "身份核验",
    busy_try_again: "暂时无法为您排队，请稍后再试。",
    calibrate: "请正对摄像头",
    rest: "请看着摄像头，保持不动",
    blink_twice: "请眨眼两次",
    blink_three_times: "请眨眼三次",
    turn_left: "请向左转头并保持",
    turn_right: "请向右转头并保持",
    tilt_left: "请把头向左肩倾斜并保持",
    tilt_right: "请把头向右肩倾斜并保持",
    open_mouth: "请张大嘴并保持",
    smile: "请微笑并保持",
    release_turn: "现在请看回摄像头",
    release_tilt: "现在请把头摆正",
    release_open_mouth: "现在请闭上嘴",
    release_smile: "现在请放松",
    speak_phrase: "请大声读出这些数字",
    thank_you: "谢谢",
    check_finished: "核验结束",
    hint_come_closer: "请离摄像头近一点",
    hint_more_light: "请到光线更亮的地方",
    hint_hold_still: "请拿稳手机",
    hint_face_camera: "请正对摄像头",
    hint_alone_in_frame: "请确保画面中只有您一人",
    location_ask: "办理此项业务，银行需要知道您所在的位置。是否在本次通话中共享手机位置？",
    location_share: "共享我的位置",
    location_failed: "无法读取您的位置，请在手机设置中允许定位。",
    script_index: "第 {index} 条，共 {total} 条",
    script_confirm: "我确认",
    script_question: "我有疑问",
    otp_prompt: "请输入我们发送到您手机的 {digits} 位验证码",
    otp_submit: "确认",
    otp_wrong: "验证码不正确，还可以再试 {n} 次。",
    otp_verified: "验证码已确认，谢谢您。",
    otp_failed: "验证码未能确认，柜员会协助您。",
    otp_expired: "验证码已过期，柜员可以为您重新发送。",
  },
};

const SPEECH = { en: "en-US", zh: "zh-CN" };

function chosen() {
  const fromApp = new URLSearchParams(location.hash.slice(1)).get("lang");
  const saved = localStorage.getItem("vteller.lang");
  const browser = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
  return [fromApp, saved, browser].find((l) => l && l in STRINGS) || "en";
}

export const i18n = { lang: chosen() };

export function t(key, vars = {}) {
  const text = STRINGS[i18n.lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function has(key) { return key in STRINGS.en; }

// Fill `el` with the text of `key`, putting the given elements where their {name}
// stands (word order differs between languages; the elements keep their ids).
export function fill(el, key, parts) {
  const text = STRINGS[i18n.lang][key] ?? STRINGS.en[key];
  el.replaceChildren(...text.split(/(\{\w+\})/).filter(Boolean).map((piece) => {
    const name = piece.match(/^\{(\w+)\}$/)?.[1];
    return name && parts[name] ? parts[name] : document.createTextNode(piece);
  }));
}

export function speechLang() { return SPEECH[i18n.lang]; }

// Fill every element carrying data-i18n (text) or data-i18n-label (aria-label).
export function apply(root = document) {
  document.documentElement.lang = i18n.lang === "zh" ? "zh-CN" : "en";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-label]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nLabel)));
  document.title = t("title");
}

export function setLang(lang) {
  if (!(lang in STRINGS)) return;
  i18n.lang = lang;
  localStorage.setItem("vteller.lang", lang);
  apply();
}
