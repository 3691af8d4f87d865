//! The providers against real peers: Twilio's and Telnyx's own SDKs (webhook signatures),
//! Stoplight Prism with Twilio's OpenAPI description (outgoing requests), and small local HTTP
//! servers (error classification, reconciliation). Nothing here reaches the internet.

mod http_errors;
mod prism;
mod support;
mod telnyx_signatures;
mod twilio_signatures;
