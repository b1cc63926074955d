//! `labrun status`: each lab with its instances (as the provider has them
//! now, where it can say so without the lab's lock), network and security
//! groups, else its recorded resources. Takes no lock, so it works while a
//! run is going on. `--output json` prints the same as one JSON document.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{Error, Exit};
use crate::ledger::{self, LedgerData, Resource, ResourceKind, ResourceState, now_secs};
use crate::providers::local::groups;
use crate::providers::{Instance, SecurityGroup};
use crate::report::{OutputMode, Reporter};

/// `42s`, `5m`, `3h`, `2d`.
pub fn age(since: u64) -> String {
    let s = now_secs().saturating_sub(since);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// One lab as `status` reports it.
struct LabStatus {
    lab: String,
    ledger: Option<LedgerData>,
    /// The instances as the provider reports them now; `None` where the
    /// provider is not asked (AWS) or could not be reached.
    instances: Option<Vec<Instance>>,
    /// Why the provider could not be asked.
    observe_error: Option<String>,
    security_groups: Vec<SecurityGroup>,
    /// Why the ledger could not be read.
    error: Option<String>,
}

impl LabStatus {
    /// The lab for `--output json`: the ledger's facts and resources, the
    /// instances as observed (`null` where not observed), the groups.
    fn to_json(&self) -> Value {
        let mut v = json!({"lab": self.lab});
        if let Some(d) = &self.ledger {
            v["provider"] = json!(d.provider);
            v["region"] = json!(d.region);
            v["playbook"] = json!(d.playbook);
            v["created_at"] = json!(d.created_at);
            v["updated_at"] = json!(d.updated_at);
            v["resources"] = json!(d.resources);
            v["instances"] = json!(self.instances);
            v["security_groups"] = json!(self.security_groups);
            v["pending"] = json!(
                d.resources
                    .iter()
                    .filter(|r| r.state == ResourceState::Pending)
                    .count()
            );
        }
        if let Some(e) = &self.observe_error {
            v["observe_error"] = json!(e);
        }
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}

pub fn status(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    only: Option<&str>,
) -> Result<Exit, Error> {
    let root = ledger::state_root()?;
    let labs: Vec<LabStatus> = ledger::list_labs(&root)
        .into_iter()
        .filter(|l| only.is_none_or(|o| o == l))
        .filter_map(|lab| gather(runtime, &root, lab))
        .collect();
    if reporter.mode() == OutputMode::Json {
        let labs: Vec<Value> = labs.iter().map(LabStatus::to_json).collect();
        reporter.print_event(json!({"event": "status", "labs": labs}));
        return Ok(Exit::Ok);
    }
    if labs.is_empty() {
        reporter.print(&match only {
            Some(l) => format!("no lab named '{l}' under {}", root.display()),
            None => format!("no labs under {}", root.display()),
        });
    }
    for lab in &labs {
        match (&lab.ledger, &lab.error) {
            (Some(d), _) => {
                for line in text(lab, d) {
                    reporter.print(&line);
                }
            }
            (None, Some(e)) => reporter.warn(&format!("{}: {e}", lab.lab)),
            (None, None) => {}
        }
    }
    Ok(Exit::Ok)
}

/// What is known of `lab`: its ledger and, where the provider can say, its
/// instances now. `None` for a directory without a ledger.
fn gather(
    runtime: &tokio::runtime::Runtime,
    root: &std::path::Path,
    lab: String,
) -> Option<LabStatus> {
    let dir = root.join("labs").join(&lab);
    let mut status = LabStatus {
        lab,
        ledger: None,
        instances: None,
        observe_error: None,
        security_groups: Vec::new(),
        error: None,
    };
    match LedgerData::load(&dir) {
        Ok(Some(d)) => {
            match runtime.block_on(d.provider.observe(&status.lab)) {
                Some(Ok(list)) => status.instances = Some(list),
                Some(Err(e)) => status.observe_error = Some(e.to_string()),
                None => {}
            }
            status.security_groups = groups::from_ledger(&d);
            status.ledger = Some(d);
        }
        Ok(None) => return None,
        Err(e) => status.error = Some(e.to_string()),
    }
    Some(status)
}

/// The text lines for one lab.
fn text(lab: &LabStatus, d: &LedgerData) -> Vec<String> {
    let mut lines = vec![format!(
        "{}  provider={}{}  resources={}  created {} ago, updated {} ago",
        lab.lab,
        d.provider,
        d.region
            .as_deref()
            .map(|r| format!("  region={r}"))
            .unwrap_or_default(),
        d.resources.len(),
        age(d.created_at),
        age(d.updated_at)
    )];
    match (&lab.instances, &lab.observe_error) {
        (Some(list), _) => observed(d, list, &lab.security_groups, &mut lines),
        (None, Some(e)) => {
            lines.push(format!("  (engine not reachable: {e}; showing the ledger)"));
            recorded(&d.resources, &mut lines);
        }
        (None, None) => recorded(&d.resources, &mut lines),
    }
    lines
}

/// A lab whose provider reported its instances.
fn observed(d: &LedgerData, instances: &[Instance], sgs: &[SecurityGroup], out: &mut Vec<String>) {
    if instances.is_empty() {
        out.push("  no instances".into());
    } else {
        out.push(format!(
            "  {:<20} {:<15} {:<15} {:<16} {:<8} AGE",
            "INSTANCE", "ID", "PRIVATE IP", "SSH", "STATE"
        ));
        for i in instances {
            let ssh = if i.ssh_port > 0 {
                format!("{}:{}", i.public_ip, i.ssh_port)
            } else {
                "-".into()
            };
            out.push(format!(
                "  {:<20} {:<15} {:<15} {:<16} {:<8} {}",
                i.name,
                i.id,
                i.private_ip,
                ssh,
                i.state,
                age(i.launched_at)
            ));
        }
    }
    for r in d
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Network)
    {
        out.push(format!(
            "  network {} {}",
            r.name,
            r.data["subnet"].as_str().unwrap_or("")
        ));
    }
    if !sgs.is_empty() {
        let list: Vec<String> = sgs
            .iter()
            .map(|g| format!("{} ({}, {})", g.name, g.id, g.rules_summary()))
            .collect();
        out.push(format!("  security groups: {}", list.join(", ")));
    }
    let pending = d
        .resources
        .iter()
        .filter(|r| r.state == ResourceState::Pending)
        .count();
    if pending > 0 {
        out.push(format!(
            "  {pending} resource(s) recorded as pending (a run was interrupted): `labrun destroy --lab {}` cleans up",
            d.lab
        ));
    }
}

/// A lab as its ledger records it.
fn recorded(resources: &[Resource], out: &mut Vec<String>) {
    for r in resources {
        out.push(format!(
            "  {:<15} {:<24} {:<22} {:?}  {}",
            r.kind,
            r.name,
            r.id.as_deref().unwrap_or("-"),
            r.state,
            age(r.recorded_at)
        ));
    }
}
