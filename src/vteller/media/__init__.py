"""Media: aiortc legs (one per party), packet forwarding between them, and taps."""

from vteller.media.leg import MediaLeg, MediaNegotiationError, check_offer
from vteller.media.relay import Feed, FeedTrack, MediaGate, MediaItem, Tap

__all__ = ["Feed", "FeedTrack", "MediaGate", "MediaItem", "MediaLeg", "MediaNegotiationError",
           "Tap", "check_offer"]
