//! fhir (being written).
