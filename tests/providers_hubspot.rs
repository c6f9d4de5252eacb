//! The built-in `hubspot` integration end to end against its provider's fake (HubSpot).
