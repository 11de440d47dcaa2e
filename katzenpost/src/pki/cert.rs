//! The CBOR certificate envelope (§5.2). (in progress)
