"""Media: aiortc peer connections (one leg per party) and bounded track forwarding."""

from vteller.media.leg import LEG_LAYOUT, MediaLeg, MediaNegotiationError
from vteller.media.relay import Feed, FeedTrack

__all__ = ["LEG_LAYOUT", "Feed", "FeedTrack", "MediaLeg", "MediaNegotiationError"]
