//! SMART Backend Services for the gateway (being written).
