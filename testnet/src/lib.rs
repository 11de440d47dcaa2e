//! A local Katzenpost network for demos and tests.
