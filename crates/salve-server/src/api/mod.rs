pub mod health;
pub mod patients;
