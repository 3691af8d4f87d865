pub mod account;
pub mod health;
pub mod oversight;
pub mod patients;
pub mod portal;
pub mod session;
pub mod teams;
pub mod users;
