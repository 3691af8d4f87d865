//! Graceful shutdown holds from the moment the server says it is listening.

mod common;

use common::Salve;
use salve_testkit::TestDatabase;

/// A SIGTERM sent right after the listening line must drain and write the final checkpoint,
/// not kill the process (the signal handler used to be installed only once serving began).
/// The window is small, so the test tries several times.
#[test]
fn sigterm_right_after_the_listening_line_shuts_down_gracefully() {
    let db = TestDatabase::sqlite();
    let salve = Salve::for_db(&db);
    let practice = salve.create_practice("Shutdown Practice");
    for round in 0..8 {
        // Something new on the practice chain each round, for the final checkpoint to cover.
        salve.create_token(&practice);
        let log = salve.start_server_blocking().stop();
        assert!(
            log.contains("shutting down: draining requests"),
            "round {round}: no graceful shutdown:\n{log}"
        );
    }
    // Every stop wrote a checkpoint of the practice chain to the anchor file.
    let anchor = std::fs::read_to_string(&salve.anchor).unwrap();
    let practice_checkpoints = anchor.lines().filter(|l| l.contains(&practice)).count();
    assert_eq!(practice_checkpoints, 8, "{anchor}");
    salve.audit_verify(true).assert_success();
}
