//! `labrun sg list|allow|revoke`: a lab's security groups from the command
//! line, what the console's "Edit inbound rules" and `aws ec2
//! authorize-security-group-ingress` are in the tutorial. Rules are checked
//! as `SecurityGroup.allow` checks them and applied by the same provider
//! call, so a learner's rule is enforced at once, like a playbook's.

use std::sync::Arc;

use crate::cli::{SgCommand, SgRuleArgs};
use crate::error::{Error, Exit};
use crate::providers::{self, Protocol, Provider, Rule, SecurityGroup, Source};
use crate::report::Reporter;

use super::run::OpenLab;

pub fn sg(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    command: SgCommand,
) -> Result<Exit, Error> {
    match command {
        SgCommand::List { lab, member, aws } => {
            let lab = member.lab(lab.as_deref())?;
            let (open, provider) = connect(runtime, reporter, &lab, &aws)?;
            let groups = runtime.block_on(provider.groups())?;
            if groups.is_empty() {
                reporter.print(&format!("lab '{}' has no security groups", open.lab));
            }
            for g in &groups {
                reporter.print(&format!("{}  {}  {}", g.name, g.id, g.description));
                if g.rules.is_empty() {
                    reporter.print("  (no ingress rules: nothing gets in)");
                }
                for r in &g.rules {
                    reporter.print(&format!("  allow {}", describe(r, &groups)));
                }
            }
            Ok(Exit::Ok)
        }
        SgCommand::Allow(args) => change(runtime, reporter, args, true),
        SgCommand::Revoke(args) => change(runtime, reporter, args, false),
    }
}

fn connect(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    lab: &str,
    aws: &crate::cli::AwsArgs,
) -> Result<(OpenLab, Arc<dyn Provider>), Error> {
    let open = OpenLab::existing(runtime, reporter, lab, aws.options())?.ok_or_else(|| {
        Error::Input(format!(
            "no lab named '{lab}'; `labrun status` lists the labs"
        ))
    })?;
    let provider = open.connect(runtime)?;
    Ok((open, provider))
}

/// A rule's source as the user knows it: a group's name rather than its id.
fn describe(r: &Rule, groups: &[SecurityGroup]) -> String {
    match &r.source {
        Source::Group(id) => {
            let name = groups
                .iter()
                .find(|g| &g.id == id)
                .map_or(id.as_str(), |g| g.name.as_str());
            let mut shown = r.clone();
            shown.source = Source::Group(format!("{name} (members)"));
            shown.describe()
        }
        Source::Cidr(_) => r.describe(),
    }
}

fn change(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: SgRuleArgs,
    allow: bool,
) -> Result<Exit, Error> {
    let verb = if allow { "allow" } else { "revoke" };
    let input = |e: String| Error::Input(format!("labrun sg {verb}: {e}"));
    let protocol = Protocol::parse(&args.protocol).map_err(|e| input(e.to_string()))?;
    // The numbers first: they need no lab.
    Rule::new(
        protocol,
        args.port,
        args.to_port,
        Source::Cidr(String::new()),
    )
    .map_err(|e| input(e.to_string()))?;

    let lab = args.member.lab(args.lab.as_deref())?;
    let (open, provider) = connect(runtime, reporter, &lab, &args.aws)?;
    let groups = runtime.block_on(provider.groups())?;
    let group = groups
        .iter()
        .find(|g| g.name == args.group || g.id == args.group)
        .ok_or_else(|| {
            input(format!(
                "no security group '{}' in lab '{}' (groups: {})",
                args.group,
                open.lab,
                groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let source = if let Some(g) = groups
        .iter()
        .find(|g| g.name == args.from || g.id == args.from)
    {
        Source::Group(g.id.clone())
    } else if let Some(i) = runtime
        .block_on(provider.instances())?
        .into_iter()
        .find(|i| i.name == args.from || i.id == args.from)
    {
        Source::Cidr(format!("{}/32", i.private_ip))
    } else {
        Source::Cidr(providers::parse_cidr(&args.from).map_err(|e| {
            input(format!(
                "--from: '{}' is no instance or security group of lab '{}', and {e}",
                args.from, open.lab
            ))
        })?)
    };
    let rule =
        Rule::new(protocol, args.port, args.to_port, source).map_err(|e| input(e.to_string()))?;
    let changed = runtime.block_on(async {
        if allow {
            provider.authorize(&group.id, &rule).await
        } else {
            provider.revoke(&group.id, &rule).await
        }
    })?;
    let what = describe(&rule, &groups);
    reporter.print(&match (allow, changed) {
        (true, true) => format!("{}: now allows {what}", group.name),
        (true, false) => format!("{}: already allowed {what}", group.name),
        (false, true) => format!("{}: no longer allows {what}", group.name),
        (false, false) => format!("{}: had no rule {what}", group.name),
    });
    Ok(Exit::Ok)
}
