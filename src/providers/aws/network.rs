//! Where the lab's groups and instances go: the VPC (the default one unless
//! `--vpc` names another) and its subnets, or the one `--subnet` names.

use super::{AwsProvider, filter};
use crate::providers::{ProviderError, ProviderResult};

/// Where the lab's groups and instances live.
#[derive(Clone, Debug)]
pub(super) struct Network {
    pub(super) vpc: String,
    /// Where instances may go, in order of preference (never empty).
    pub(super) subnets: Vec<String>,
}

impl AwsProvider {
    pub(super) async fn network(&self) -> ProviderResult<&Network> {
        self.network.get_or_try_init(|| self.find_network()).await
    }

    async fn find_network(&self) -> ProviderResult<Network> {
        if let Some(subnet) = &self.subnet {
            let out = self
                .ec2
                .describe_subnets()
                .subnet_ids(subnet)
                .send()
                .await
                .map_err(|e| self.api(format!("looking up subnet {subnet}"), e))?;
            let vpc = out
                .subnets()
                .first()
                .and_then(|s| s.vpc_id())
                .ok_or_else(|| ProviderError::NotFound {
                    kind: "subnet",
                    id: subnet.clone(),
                })?;
            if let Some(asked) = self.vpc.as_deref().filter(|v| *v != vpc) {
                return Err(ProviderError::Invalid(format!(
                    "--subnet {subnet} is in {vpc}, not in --vpc {asked}"
                )));
            }
            return Ok(Network {
                vpc: vpc.to_string(),
                subnets: vec![subnet.clone()],
            });
        }
        let (vpc, default) = match &self.vpc {
            Some(v) => (v.clone(), false),
            None => {
                let out = self
                    .ec2
                    .describe_vpcs()
                    .filters(filter("isDefault", &["true"]))
                    .send()
                    .await
                    .map_err(|e| self.api("looking up the default VPC", e))?;
                let vpc = out.vpcs().first().and_then(|v| v.vpc_id()).ok_or_else(|| {
                    ProviderError::Unavailable(format!(
                        "aws: this account has no default VPC in {}: create one with \
                         `aws ec2 create-default-vpc --region {}`, or pass --vpc VPC_ID \
                         --subnet SUBNET_ID",
                        self.region, self.region
                    ))
                })?;
                (vpc.to_string(), true)
            }
        };
        let mut req = self
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", &[&vpc]))
            .filters(filter("state", &["available"]));
        if default {
            req = req.filters(filter("default-for-az", &["true"]));
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.api(format!("looking up the subnets of {vpc}"), e))?;
        // Deterministic: a subnet that gives public addresses, first zone first.
        let mut subnets: Vec<_> = out.subnets().iter().collect();
        subnets.sort_by_key(|s| {
            (
                !s.map_public_ip_on_launch().unwrap_or(false),
                s.availability_zone().unwrap_or_default().to_string(),
            )
        });
        let subnets: Vec<String> = subnets
            .iter()
            .filter_map(|s| s.subnet_id().map(String::from))
            .collect();
        if subnets.is_empty() {
            return Err(ProviderError::Unavailable(format!(
                "aws: {vpc} has no available {}subnet in {}; pass --subnet SUBNET_ID",
                if default { "default " } else { "" },
                self.region
            )));
        }
        Ok(Network { vpc, subnets })
    }
}
