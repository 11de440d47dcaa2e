//! The mailproxyd management protocol.
