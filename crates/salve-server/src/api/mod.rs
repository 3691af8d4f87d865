pub mod health;
pub mod oversight;
pub mod patients;
pub mod portal;
pub mod session;
pub mod users;
