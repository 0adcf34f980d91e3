"""Assist settings: consent timeouts and the navigation allowlist (`[assist]`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Destination(BaseModel):
    """A page of the banking app the teller may open for the customer."""

    model_config = {"frozen": True, "extra": "forbid"}

    id: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    title: str = Field(min_length=1, max_length=80)
    link: str = Field(min_length=1, max_length=500, description="deep link or https URL")


class AssistPolicy(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    request_timeout_s: float = Field(60.0, gt=0, le=600)
    purposes: list[str] = Field(default_factory=list, description="when set, the only "
                                "screen-share purposes a teller may state (else free text "
                                "without links)")
    start_timeout_s: float = Field(30.0, gt=0, le=600)
    destinations: list[Destination] = Field(default_factory=lambda: [
        Destination(id="cards.activate", title="Activate a card",
                    link="bankapp://cards/activate"),
        Destination(id="security.password", title="Change your password",
                    link="bankapp://security/password"),
        Destination(id="profile.contact", title="Update your contact details",
                    link="bankapp://profile/contact"),
        Destination(id="help.fees", title="Fees and charges",
                    link="https://bank.example/help/fees"),
    ])

    def destination(self, destination_id: str) -> Destination | None:
        return next((d for d in self.destinations if d.id == destination_id), None)
