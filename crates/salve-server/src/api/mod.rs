pub mod health;
pub mod patients;
pub mod session;
pub mod users;
