//! `sg::` — security groups and their ingress rules, plus `operator_cidr()`.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, FnNamespace, Map, Module, NativeCallContext};

use super::args::Options;
use super::{LabContext, at_call, find_named, func, provider_error};
use crate::engine::{RhaiResult, script_error};
use crate::providers::{self, Instance, Protocol, Rule, SecurityGroup, Source};

const RULE_KEYS: &[&str] = &["port", "to_port", "protocol", "from"];

/// The id of the lab's group called `name`.
pub fn group_id_by_name(ctx: &LabContext, name: &str) -> RhaiResult<String> {
    let p = ctx.provider()?;
    let groups = ctx
        .block_on(p.groups())
        .map_err(|e| provider_error("sg", e))?;
    groups
        .iter()
        .find(|g| g.name == name || g.id == name)
        .map(|g| g.id.clone())
        .ok_or_else(|| {
            script_error(format!(
                "no security group '{name}' in this lab (groups: {}); create it with sg::ensure(#{{name: \"{name}\"}})",
                groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// Reads a rule map: `#{port, to_port, protocol, from}`.
fn rule_from_map(function: &str, map: Map) -> RhaiResult<Rule> {
    let o = Options::new(function, &map, RULE_KEYS, &["port", "from"])?;
    let int = |key: &str| -> RhaiResult<Option<i64>> {
        o.get(key)
            .map(|v| {
                v.as_int().map_err(|t| {
                    script_error(format!("{function}: `{key}` must be an integer, got {t}"))
                })
            })
            .transpose()
    };
    let port = int("port")?.expect("checked present");
    let to_port = int("to_port")?;
    let protocol = match o.get("protocol") {
        None => Protocol::Tcp,
        Some(v) => Protocol::parse(&v.to_string()).map_err(|e| o.error(e))?,
    };
    let from = o.get("from").expect("checked present").clone();
    let source = if let Some(i) = from.clone().try_cast::<Instance>() {
        Source::Cidr(format!("{}/32", i.private_ip))
    } else if let Some(g) = from.clone().try_cast::<SecurityGroup>() {
        Source::Group(g.id)
    } else if let Ok(text) = from.clone().into_string() {
        Source::Cidr(
            providers::parse_cidr(&text)
                .map_err(|e| script_error(format!("{function}: `from`: {e}")))?,
        )
    } else {
        return Err(script_error(format!(
            "{function}: `from` must be an instance, a security group or a CIDR string, got {}",
            from.type_name()
        )));
    };
    Rule::new(protocol, port, to_port, source).map_err(|e| o.error(e))
}

/// A rule as playbooks read it back.
fn rule_to_map(rule: &Rule, groups: &[SecurityGroup]) -> Map {
    let mut m = Map::new();
    m.insert("protocol".into(), rule.protocol.as_str().into());
    m.insert("port".into(), (rule.from_port as i64).into());
    m.insert("to_port".into(), (rule.to_port as i64).into());
    match &rule.source {
        Source::Cidr(c) => {
            m.insert("from".into(), c.clone().into());
        }
        Source::Group(id) => {
            let name = groups
                .iter()
                .find(|g| &g.id == id)
                .map(|g| g.name.clone())
                .unwrap_or(id.clone());
            m.insert("from".into(), name.into());
            m.insert("from_group".into(), id.clone().into());
        }
    }
    m
}

fn describe(g: &SecurityGroup) -> String {
    format!("SecurityGroup({} {} {})", g.name, g.id, g.rules_summary())
}

/// Applies a rule change and reports it.
fn change_rule(
    ctx: &LabContext,
    function: &str,
    g: &mut SecurityGroup,
    rule: Map,
    allow: bool,
) -> RhaiResult<bool> {
    ctx.check_cancel()?;
    let rule = rule_from_map(function, rule)?;
    let p = ctx.provider()?;
    let changed = ctx
        .block_on(async {
            if allow {
                p.authorize(&g.id, &rule).await
            } else {
                p.revoke(&g.id, &rule).await
            }
        })
        .map_err(|e| provider_error(function, e))?;
    if changed {
        ctx.changed();
    }
    if let Ok(groups) = ctx.block_on(p.groups())
        && let Some(fresh) = groups.into_iter().find(|x| x.id == g.id)
    {
        *g = fresh;
    }
    Ok(changed)
}

pub fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    engine.register_type_with_name::<SecurityGroup>("SecurityGroup");
    func(
        "get$id",
        &["this: SecurityGroup", "String"],
        "The provider's group id.",
    )
    .register_into_engine(engine, |g: &mut SecurityGroup| g.id.clone());
    func(
        "get$name",
        &["this: SecurityGroup", "String"],
        "The group's name.",
    )
    .register_into_engine(engine, |g: &mut SecurityGroup| g.name.clone());
    func(
        "get$description",
        &["this: SecurityGroup", "String"],
        "The group's description.",
    )
    .register_into_engine(engine, |g: &mut SecurityGroup| g.description.clone());
    let c = ctx.clone();
    func(
        "get$rules",
        &["this: SecurityGroup", "Array"],
        "The group's ingress rules, read from the provider now: maps of
        `#{protocol, port, to_port, from}` (`from` is a CIDR or a group name).",
    )
    .register_into_engine(engine, move |g: &mut SecurityGroup| -> RhaiResult<Array> {
        let p = c.provider()?;
        let groups = c
            .block_on(p.groups())
            .map_err(|e| provider_error("SecurityGroup.rules", e))?;
        let current = groups.iter().find(|x| x.id == g.id).ok_or_else(|| {
            script_error(format!(
                "SecurityGroup.rules: group '{}' ({}) no longer exists",
                g.name, g.id
            ))
        })?;
        Ok(current
            .rules
            .iter()
            .map(|r| Dynamic::from_map(rule_to_map(r, &groups)))
            .collect())
    });
    engine.register_fn("to_string", |g: &mut SecurityGroup| describe(g));
    engine.register_fn("to_debug", |g: &mut SecurityGroup| describe(g));

    let c = ctx.clone();
    func(
        "allow",
        &["this: SecurityGroup", "rule: Map", "bool"],
        "Allows ingress `#{port, to_port, protocol, from}`: `from` is an instance (its
        private IP /32), a security group (its members) or a CIDR string; `protocol`
        defaults to tcp. Enforced at once on every attached instance. Returns whether
        the rule was new.",
    )
    .register_into_engine(engine, move |g: &mut SecurityGroup, rule: Map| {
        change_rule(&c, "SecurityGroup.allow", g, rule, true)
    });
    let c = ctx.clone();
    func(
        "revoke",
        &["this: SecurityGroup", "rule: Map", "bool"],
        "Removes an ingress rule (same form as `allow`). Returns whether it existed.",
    )
    .register_into_engine(engine, move |g: &mut SecurityGroup, rule: Map| {
        change_rule(&c, "SecurityGroup.revoke", g, rule, false)
    });

    // `sg::find` returns () for a missing group: say so, rather than
    // "wrong arguments for allow ((), map)".
    for verb in ["allow", "revoke"] {
        func(
            verb,
            &["this: ()", "rule: Map", "bool"],
            "An error that says the group does not exist (`sg::find` returns `()`
            for a name the lab has no group of).",
        )
        .register_into_engine(engine, move |_: (), _: Map| -> RhaiResult<bool> {
            Err(script_error(format!(
                "SecurityGroup.{verb}: there is no such security group (got `()`, which \
                 sg::find returns for a name this lab has no group of); create it with \
                 sg::ensure(#{{name: \"...\"}})"
            )))
        });
    }

    let c = ctx.clone();
    func(
        "operator_cidr",
        &["String"],
        "Where labrun's own traffic to the instances comes from, as a CIDR: what an
        SSH rule for the operator allows.",
    )
    .register_into_engine(engine, move || -> RhaiResult<String> {
        let p = c.provider()?;
        c.block_on(p.operator_cidr())
            .map_err(|e| provider_error("operator_cidr", e))
    });

    let mut m = Module::new();
    m.set_doc("//! Security groups of the lab: default-deny ingress, egress open.");
    let c = ctx.clone();
    func(
        "ensure",
        &["spec: Map", "SecurityGroup"],
        "The lab's group `#{name, description}`, created if missing.",
    )
    .with_namespace(FnNamespace::Internal)
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, spec: Map| -> RhaiResult<SecurityGroup> {
            at_call(&nctx, || {
                Options::new("sg::ensure", &spec, &["name", "description"], &["name"])?;
                let name = spec["name"].to_string();
                if name.is_empty() || name.len() > 64 {
                    return Err(script_error("sg::ensure: `name` must be 1-64 characters"));
                }
                let description = spec
                    .get("description")
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| format!("labrun {} {name}", c.lab));
                c.check_cancel()?;
                let p = c.provider()?;
                let (g, changed) = c
                    .block_on(p.ensure_group(&name, &description))
                    .map_err(|e| provider_error("sg::ensure", e))?;
                if changed {
                    c.changed();
                }
                Ok(g)
            })
        },
    );
    let c = ctx.clone();
    func(
        "find",
        &["name: string", "Dynamic"],
        "The lab's group `name`, or `()`.",
    )
    .with_namespace(FnNamespace::Internal)
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, name: &str| -> RhaiResult<Dynamic> {
            at_call(&nctx, || {
                let p = c.provider()?;
                let groups = c
                    .block_on(p.groups())
                    .map_err(|e| provider_error("sg::find", e))?;
                Ok(find_named(groups, name, |g| &g.name))
            })
        },
    );
    let c = ctx.clone();
    func("groups", &["Array"], "The lab's security groups.")
        .with_namespace(FnNamespace::Internal)
        .set_into_module(
            &mut m,
            move |nctx: NativeCallContext| -> RhaiResult<Array> {
                at_call(&nctx, || {
                    let p = c.provider()?;
                    let groups = c
                        .block_on(p.groups())
                        .map_err(|e| provider_error("sg::groups", e))?;
                    Ok(groups.into_iter().map(Dynamic::from).collect())
                })
            },
        );
    engine.register_static_module("sg", m.into());
}
