//! Writing into the practice's EHR over FHIR R4. This part: the outbound client
//! ([`client::EhrClient`]) that signs in as the practice's connection says and creates
//! resources conditionally on Salve's identifier.

pub mod client;
pub mod pull;
