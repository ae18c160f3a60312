//! `judge top`: app state, pure draw functions and the event loop.
