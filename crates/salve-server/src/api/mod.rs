pub mod health;
pub mod oversight;
pub mod patients;
pub mod session;
pub mod users;
