//! Store throughput on this machine: audited creates and reads, name search (index build and
//! warm query) and audit verification. Results go in docs/benchmarks.md.
//!
//! cargo run --release -p salve-store --example store_bench -- [PATIENTS] [postgres://…]

use std::sync::Arc;
use std::time::Instant;

use salve_core::audit::{Actor, RequestContext};
use salve_core::patient::{ContactInput, ContactKind, ContactRole, PatientInput, PatientRecord};
use salve_core::{Sensitive, SystemClock};
use salve_crypto::MasterKey;
use salve_store::{Store, StoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let options = StoreOptions::new(url.clone());
    Store::migrate(&options).await?;
    let store = Store::open(&options, MasterKey::generate(), Arc::new(SystemClock)).await?;
    println!("backend: {:?}, patients: {n}", store.backend());
    let practice = store
        .create_practice(Actor::Cli, "Bench", "US", "America/Chicago")
        .await?
        .id;
    let ctx = store.input_context(practice).await?;
    let actor = salve_core::permissions::Principal::Operator;
    let rc = RequestContext {
        ip: Some("203.0.113.7".into()),
        user_agent: Some("bench".into()),
        request_id: None,
        reason: None,
    };
    let s = |v: String| Sensitive::new(v);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let input = PatientInput {
            given_name: s(format!("Given{i}")),
            family_name: s(format!("Family{}", i % 500)),
            birth_date: s(format!(
                "19{:02}-{:02}-{:02}",
                40 + i % 60,
                1 + i % 12,
                1 + i % 28
            )),
            mrn: Some(s(format!("MRN{i:07}"))),
            preferred_language: None,
            time_zone: None,
            contacts: vec![ContactInput {
                kind: ContactKind::Phone,
                value: s(format!("+1312555{:04}", i % 10_000)),
                role: ContactRole::Patient,
            }],
        };
        let record = PatientRecord::from_input(&input, &ctx).map_err(|e| format!("{e:?}"))?;
        ids.push(
            store
                .create_patient(practice, &actor, &rc, &record, None)
                .await?
                .0
                .id,
        );
    }
    report("create (audited, one transaction each)", n, started);
    let started = Instant::now();
    for id in &ids {
        store.read_patient(practice, &actor, &rc, *id).await?;
    }
    report("read (audited)", n, started);
    let started = Instant::now();
    let found = store
        .search_patients(practice, &actor, &rc, "family7", 50)
        .await?;
    report("search, cold (builds the name index)", 1, started);
    let started = Instant::now();
    let queries = 200;
    for i in 0..queries {
        store
            .search_patients(
                practice,
                &actor,
                &rc,
                &format!("given{}", i * 7 % n.max(1)),
                50,
            )
            .await?;
    }
    report("search, warm", queries, started);
    assert!(!found.is_empty());
    store.write_checkpoints(None).await?;
    let started = Instant::now();
    let verified = store.verify_audit(None).await?;
    let rows = verified.rows as usize;
    report(&format!("audit verify ({rows} rows)"), rows, started);
    assert!(verified.ok());
    Ok(())
}

fn report(what: &str, count: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:45} {count:>7} in {secs:>7.2} s = {:>9.1}/s",
        count as f64 / secs.max(1e-9)
    );
}
