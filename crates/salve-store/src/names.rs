//! Name search without a plaintext name on disk: a per-practice in-memory index built from
//! decrypted names, rebuilt when the practice's patient generation moves (on any instance),
//! and wiped from memory when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use salve_core::PatientId;
use salve_core::PracticeId;
use zeroize::Zeroizing;

pub(crate) struct NameIndex {
    pub generation: i64,
    /// (patient, "given family" lowercased)
    pub entries: Vec<(PatientId, Zeroizing<String>)>,
}

impl NameIndex {
    /// Patients whose name contains every term of the query (case-insensitive).
    pub fn search(&self, query: &str, limit: usize) -> Vec<PatientId> {
        let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        if terms.is_empty() {
            return Vec::new();
        }
        self.entries
            .iter()
            .filter(|(_, name)| terms.iter().all(|t| name.contains(t.as_str())))
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }
}

#[derive(Default)]
pub(crate) struct NameIndexCache {
    inner: Mutex<HashMap<PracticeId, Arc<NameIndex>>>,
}

impl NameIndexCache {
    pub fn get(&self, practice: PracticeId, generation: i64) -> Option<Arc<NameIndex>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&practice)
            .filter(|idx| idx.generation == generation)
            .cloned()
    }

    pub fn put(&self, practice: PracticeId, index: Arc<NameIndex>) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(practice, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_term_must_match_somewhere_in_the_name() {
        let a = PatientId::new();
        let b = PatientId::new();
        let idx = NameIndex {
            generation: 1,
            entries: vec![
                (a, Zeroizing::new("ana ruiz".into())),
                (b, Zeroizing::new("anabel ortiz".into())),
            ],
        };
        assert_eq!(idx.search("ANA", 10), vec![a, b]);
        assert_eq!(idx.search("ana rui", 10), vec![a]);
        assert_eq!(idx.search("tiz", 10), vec![b]);
        assert!(idx.search("   ", 10).is_empty());
        assert_eq!(idx.search("ana", 1).len(), 1);
    }
}
