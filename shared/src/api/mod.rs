//! Request and response handlers.
