//! End-to-end tests of the `shmhub` command: every subcommand and flag of
//! the CLI contract, its documented errors and exit codes, a shell-style
//! session, held processes receiving live, and real signals.
//!
//! Every test works in its own temporary directory (bare names resolve
//! there through `SHMHUB_SHM_DIR`), every invocation is bounded in time,
//! and held processes are killed if a test fails.

mod common;
mod markdown;

mod attach;
mod bad_entry;
mod bench;
mod chaos;
mod create;
mod dead_host;
mod docs_flags;
mod docs_sessions;
mod error_classes;
mod evict;
mod extra;
mod full_fs;
mod held;
mod inspect;
mod inspect_views;
mod live;
mod man;
mod names;
mod new_user;
mod ownership;
mod peek;
mod quarantine;
mod recv;
mod rm;
mod send;
mod session;
mod smoke;
