//! The built-in `slack` integration end to end against its provider's fake (Slack).
