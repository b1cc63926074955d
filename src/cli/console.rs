//! `labrun ssh` and `labrun sg`: the console the tutorial clicks through,
//! for a lab's instances and security groups.

use clap::{Args, Subcommand};

use super::{AwsArgs, ClassMemberArgs};

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The instance's name (`labrun status` lists them)
    pub name: String,

    /// The lab [default: the only lab there is]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    #[command(flatten)]
    pub member: ClassMemberArgs,

    /// A command to run instead of a login shell; one argument is a shell
    /// command line as written, several are quoted word by word
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `labrun sg ...`.
#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// The lab's security groups and their ingress rules
    List {
        /// The lab [default: the only lab there is]
        #[arg(long, env = "LABRUN_LAB")]
        lab: Option<String>,

        #[command(flatten)]
        member: ClassMemberArgs,

        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Allow ingress into a group (like the console's "Edit inbound rules")
    Allow(SgRuleArgs),
    /// Remove an ingress rule from a group
    Revoke(SgRuleArgs),
}

#[derive(Debug, Args)]
pub struct SgRuleArgs {
    /// The group's name or id
    pub group: String,

    /// The port (or first port of a range)
    #[arg(long)]
    pub port: i64,

    /// The last port of a range [default: --port]
    #[arg(long, value_name = "PORT")]
    pub to_port: Option<i64>,

    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,

    /// Where traffic may come from: an instance of the lab (its private IP),
    /// a security group of the lab (its members), or a CIDR such as 10.0.0.5/32
    #[arg(long, value_name = "SOURCE")]
    pub from: String,

    /// The lab [default: the only lab there is]
    #[arg(long, env = "LABRUN_LAB")]
    pub lab: Option<String>,

    #[command(flatten)]
    pub member: ClassMemberArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}
