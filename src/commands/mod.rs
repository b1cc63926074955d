//! One file per subcommand.

pub mod destroy;
pub mod docs;
pub mod images;
pub mod run;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::engine::LabContext;
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

/// A context with no lab state: enough to compile and to list functions.
pub fn offline_context(runtime: &tokio::runtime::Runtime, playbook: &Path) -> Arc<LabContext> {
    Arc::new(LabContext {
        lab: "validate".into(),
        provider: crate::providers::ProviderKind::Local,
        playbook: playbook.to_path_buf(),
        reporter: Arc::new(Reporter::new(OutputMode::Plain, false, Redactor::new())),
        ledger: None,
        sets: BTreeMap::new(),
        declared_params: Default::default(),
        handle: runtime.handle().clone(),
        cancel: Arc::new(AtomicBool::new(false)),
        input_error: AtomicBool::new(false),
        failed_step: Default::default(),
        provider_options: Default::default(),
        provider_impl: Default::default(),
        ssh: Default::default(),
    })
}
