//! The built-in `google` integration end to end against its provider's fake (Google Calendar).
