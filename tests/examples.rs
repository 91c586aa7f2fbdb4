//! The example programs under `examples/` (the docs link to them) run as tests: each
//! asserts on what it shows, so a change that breaks one fails here.

mod job_wal {
    include!("../examples/job_wal.rs");
    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

mod action_queue {
    include!("../examples/action_queue.rs");
    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

mod run_store {
    include!("../examples/run_store.rs");
    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

mod event_bus {
    include!("../examples/event_bus.rs");
    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

#[test]
fn a_job_runtimes_write_ahead_log() {
    job_wal::run().unwrap();
}

#[test]
fn an_action_queue_with_caller_sequences_strict_recovery_and_poisoning() {
    action_queue::run().unwrap();
}

#[test]
fn a_stateful_run_store_with_idempotent_appends_queries_and_compaction() {
    run_store::run().unwrap();
}

#[test]
fn an_event_bus_with_subscribers_consumers_trim_and_describe() {
    event_bus::run().unwrap();
}
