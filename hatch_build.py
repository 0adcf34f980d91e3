"""Build hook: compiles ``vteller.media._rtpfast`` (the forwarding path's native part,
``src/vteller/media/_rtpfast.c``) with the machine's C compiler. Without a compiler (or
Python's headers) the build goes on and vteller forwards on its pure-Python path."""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "src/vteller/media/_rtpfast.c"


class NativeForwarding(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root, SOURCE)
        target = source.with_name("_rtpfast" + sysconfig.get_config_var("EXT_SUFFIX"))
        partial = target.with_name(target.name + ".part")
        compiler = shlex.split(os.environ.get("CC") or "cc")
        command = [*compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Werror",
                   "-I", sysconfig.get_paths()["include"], str(source), "-o", str(partial)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            target.unlink(missing_ok=True)  # never load one built from an older source
            partial.unlink(missing_ok=True)
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(f"vteller: {SOURCE} not compiled ({detail.strip()}); "
                                     "packets are forwarded by the pure-Python path")
            return
        partial.replace(target)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from src/
            build_data["force_include"][str(target)] = f"vteller/media/{target.name}"
