//! `labrun status`: what each lab has, from its ledger.

use crate::error::exit;
use crate::ledger::{self, LedgerData, now_secs};

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

pub fn status(only: Option<&str>) -> i32 {
    let root = ledger::state_root();
    let labs: Vec<String> = ledger::list_labs(&root)
        .into_iter()
        .filter(|l| only.is_none_or(|o| o == l))
        .collect();
    if labs.is_empty() {
        match only {
            Some(l) => println!("no lab named '{l}' under {}", root.display()),
            None => println!("no labs under {}", root.display()),
        }
        return exit::OK;
    }
    for lab in labs {
        let dir = root.join("labs").join(&lab);
        match LedgerData::load(&dir) {
            Ok(Some(d)) => {
                println!(
                    "{lab}  provider={}{}  resources={}  created {} ago, updated {} ago",
                    d.provider,
                    d.region
                        .as_deref()
                        .map(|r| format!("  region={r}"))
                        .unwrap_or_default(),
                    d.resources.len(),
                    age(d.created_at),
                    age(d.updated_at)
                );
                for r in &d.resources {
                    println!(
                        "  {:<15} {:<24} {:<22} {:?}  {}",
                        r.kind,
                        r.name,
                        r.id.as_deref().unwrap_or("-"),
                        r.state,
                        age(r.recorded_at)
                    );
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!("{lab}: {e}"),
        }
    }
    exit::OK
}
