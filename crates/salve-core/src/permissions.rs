//! Who may do what. The one place that answers "is this allowed?"; handlers only ask.

use std::fmt;

/// What an API token was granted. A token belongs to exactly one practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    PatientsRead,
    PatientsWrite,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::PatientsRead, Scope::PatientsWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PatientsRead => "patients:read",
            Self::PatientsWrite => "patients:write",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Parses a comma- or space-separated list; unknown names are an error naming the bad entry
    /// (scope names are not personal data).
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for part in raw.split([',', ' ']).filter(|p| !p.is_empty()) {
            let scope = Self::parse(part).ok_or_else(|| {
                format!(
                    "unknown scope `{part}`; known scopes: {}",
                    Self::ALL.map(Scope::as_str).join(", ")
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        scopes.sort();
        Ok(scopes)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operations on patient data reachable from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    PatientCreate,
    PatientRead,
    PatientList,
    PatientSearch,
    PatientLookup,
    PatientUpdate,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::PatientCreate,
        Operation::PatientRead,
        Operation::PatientList,
        Operation::PatientSearch,
        Operation::PatientLookup,
        Operation::PatientUpdate,
    ];
}

/// The permission table, as data: the scope each operation needs.
pub fn required_scope(op: Operation) -> Scope {
    match op {
        Operation::PatientCreate | Operation::PatientUpdate => Scope::PatientsWrite,
        Operation::PatientRead
        | Operation::PatientList
        | Operation::PatientSearch
        | Operation::PatientLookup => Scope::PatientsRead,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub missing: Scope,
}

/// The only gate for token-authenticated requests.
pub fn authorize_token(granted: &[Scope], op: Operation) -> Result<(), Denied> {
    let needed = required_scope(op);
    if granted.contains(&needed) {
        Ok(())
    } else {
        Err(Denied { missing: needed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_needs_exactly_its_scope() {
        for op in Operation::ALL {
            let needed = required_scope(op);
            assert!(authorize_token(&[needed], op).is_ok());
            let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != needed).collect();
            assert_eq!(
                authorize_token(&others, op),
                Err(Denied { missing: needed })
            );
            assert!(authorize_token(&[], op).is_err());
        }
    }

    #[test]
    fn write_does_not_imply_read() {
        assert!(authorize_token(&[Scope::PatientsWrite], Operation::PatientRead).is_err());
    }

    #[test]
    fn scope_lists_parse_strictly() {
        assert_eq!(
            Scope::parse_list("patients:write, patients:read").unwrap(),
            vec![Scope::PatientsRead, Scope::PatientsWrite]
        );
        assert!(Scope::parse_list("patients:delete").is_err());
        assert!(Scope::parse_list("").is_err());
    }
}
