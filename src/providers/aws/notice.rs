//! The reminder printed after a run while the lab still has instances.

use super::endpoint::{endpoint_override, is_emulator};
use crate::ledger::{LedgerData, ResourceKind};
use crate::providers::ProviderOptions;

/// What to tell the user after a run while the lab has instances: on AWS
/// they cost money until destroyed.
pub fn running_notice(lab: &str, data: &LedgerData, options: &ProviderOptions) -> Option<String> {
    let n = data
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Instance)
        .count();
    if n == 0 {
        return None;
    }
    let (count, verb) = if n == 1 {
        ("1 instance".to_string(), "is")
    } else {
        (format!("{n} instances"), "are")
    };
    let region = data.region.as_deref().unwrap_or("its region");
    Some(
        match endpoint_override(options).filter(|e| is_emulator(e)) {
            Some(e) => format!(
                "{count} of lab '{lab}' {verb} recorded on the EC2 emulator at {e} (nothing is \
             billed); `labrun destroy --lab {lab}` removes them"
            ),
            None => format!(
                "{count} of lab '{lab}' {verb} running on AWS in {region} and billed until you run \
             `labrun destroy --lab {lab}` (`labrun status` lists them)"
            ),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Resource, ResourceState};

    #[test]
    fn running_instances_are_announced_with_their_cost() {
        let mut data = LedgerData {
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        let aws = ProviderOptions {
            endpoint_url: Some("https://ec2.eu-west-1.amazonaws.com".into()),
            ..Default::default()
        };
        assert_eq!(running_notice("lab", &data, &aws), None);
        let instance = |name: &str| Resource {
            kind: ResourceKind::Instance,
            name: name.into(),
            id: Some(format!("i-{name}")),
            state: ResourceState::Created,
            data: serde_json::Value::Null,
            recorded_at: 0,
        };
        data.resources = vec![instance("a"), instance("b")];
        assert_eq!(
            running_notice("lab", &data, &aws).unwrap(),
            "2 instances of lab 'lab' are running on AWS in eu-west-1 and billed until you run \
             `labrun destroy --lab lab` (`labrun status` lists them)"
        );
        data.resources.pop();
        let moto = ProviderOptions {
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..Default::default()
        };
        assert_eq!(
            running_notice("lab", &data, &moto).unwrap(),
            "1 instance of lab 'lab' is recorded on the EC2 emulator at http://127.0.0.1:5000 \
             (nothing is billed); `labrun destroy --lab lab` removes them"
        );
    }
}
