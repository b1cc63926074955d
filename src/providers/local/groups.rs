//! Security groups of a local lab. Docker has no such thing, so they live
//! only in the lab's ledger (kind `security_group`, rules in `data`); the
//! firewall makes them real on each instance.

use serde_json::{Value, json};

use crate::ledger::{Ledger, LedgerData, Resource, ResourceKind, ResourceState};
use crate::providers::{ProviderError, ProviderResult, Rule, SecurityGroup};

/// `sg-` and 17 hex digits, like EC2's.
pub fn new_id() -> String {
    let n: u128 = rand::random();
    format!("sg-{:017x}", n & ((1u128 << 68) - 1))
}

fn from_resource(r: &Resource) -> Option<SecurityGroup> {
    Some(SecurityGroup {
        id: r.id.clone()?,
        name: r.name.clone(),
        description: r.data["description"].as_str().unwrap_or("").to_string(),
        rules: serde_json::from_value(r.data["rules"].clone()).unwrap_or_default(),
    })
}

fn to_data(g: &SecurityGroup) -> Value {
    json!({ "description": g.description, "rules": g.rules })
}

/// The groups recorded in ledger data.
pub fn from_ledger(data: &LedgerData) -> Vec<SecurityGroup> {
    data.resources
        .iter()
        .filter(|r| r.kind == ResourceKind::SecurityGroup && r.state == ResourceState::Created)
        .filter_map(from_resource)
        .collect()
}

pub fn list(ledger: &Ledger) -> Vec<SecurityGroup> {
    from_ledger(&ledger.snapshot())
}

pub fn find(ledger: &Ledger, id: &str) -> ProviderResult<SecurityGroup> {
    list(ledger)
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| ProviderError::NotFound {
            kind: "security group",
            id: id.to_string(),
        })
}

/// The group `name`, created if missing; `true` if it was created.
pub fn ensure(
    ledger: &Ledger,
    name: &str,
    description: &str,
) -> ProviderResult<(SecurityGroup, bool)> {
    let created = ledger.update(|d| {
        if let Some(g) = from_ledger(d).into_iter().find(|g| g.name == name) {
            return (g, false);
        }
        let g = SecurityGroup {
            id: new_id(),
            name: name.to_string(),
            description: description.to_string(),
            rules: Vec::new(),
        };
        d.resources
            .retain(|r| !(r.kind == ResourceKind::SecurityGroup && r.name == name));
        d.resources.push(Resource {
            kind: ResourceKind::SecurityGroup,
            name: name.into(),
            id: Some(g.id.clone()),
            state: ResourceState::Created,
            data: to_data(&g),
            recorded_at: crate::ledger::now_secs(),
        });
        (g, true)
    })?;
    Ok(created)
}

/// Adds (`add`) or removes a rule of group `id`; `true` if that changed it.
pub fn change_rule(ledger: &Ledger, id: &str, rule: &Rule, add: bool) -> ProviderResult<bool> {
    ledger
        .update(|d| {
            let r = d
                .resources
                .iter_mut()
                .find(|r| r.kind == ResourceKind::SecurityGroup && r.id.as_deref() == Some(id))?;
            let mut g = from_resource(r)?;
            let present = g.rules.contains(rule);
            let changed = match (add, present) {
                (true, false) => {
                    g.rules.push(rule.clone());
                    true
                }
                (false, true) => {
                    g.rules.retain(|x| x != rule);
                    true
                }
                _ => false,
            };
            r.data = to_data(&g);
            Some(changed)
        })?
        .ok_or_else(|| ProviderError::NotFound {
            kind: "security group",
            id: id.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Protocol, Source};
    use crate::redact::Redactor;

    #[test]
    fn groups_live_in_the_ledger() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(
            root.path(),
            "g",
            crate::providers::ProviderKind::Local,
            Redactor::new(),
        )
        .unwrap();
        let (web, created) = ensure(&ledger, "web", "web servers").unwrap();
        assert!(created);
        assert!(
            web.id.starts_with("sg-") && web.id.len() == 20,
            "{}",
            web.id
        );
        let (again, created) = ensure(&ledger, "web", "other").unwrap();
        assert!(!created);
        assert_eq!(again.id, web.id);

        let rule = Rule {
            protocol: Protocol::Tcp,
            from_port: 3306,
            to_port: 3306,
            source: Source::Cidr("10.0.0.5/32".into()),
        };
        assert!(change_rule(&ledger, &web.id, &rule, true).unwrap());
        assert!(!change_rule(&ledger, &web.id, &rule, true).unwrap());
        assert_eq!(find(&ledger, &web.id).unwrap().rules, vec![rule.clone()]);
        assert!(change_rule(&ledger, &web.id, &rule, false).unwrap());
        assert!(!change_rule(&ledger, &web.id, &rule, false).unwrap());
        let missing = change_rule(&ledger, "sg-nope", &rule, true).unwrap_err();
        assert_eq!(missing.to_string(), "security group 'sg-nope' not found");
    }
}
