//! `ec2::` — instances, through the lab's provider.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, FnNamespace, FuncRegistration, Map, Module, NativeCallContext};

use super::args::Options;
use super::{LabContext, at_call, find_named, func, provider_error};
use crate::engine::{RhaiResult, script_error};
use crate::providers::{Instance, InstanceSpec, SecurityGroup};

const SPEC_KEYS: &[&str] = &["name", "image", "instance_type", "security_groups"];

/// A spec's name, image and instance type, checked as far as that can be
/// done without the provider.
fn spec_basics(ctx: &LabContext, function: &str, o: &Options) -> RhaiResult<InstanceSpec> {
    let name = o.string("name")?.unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(script_error(format!(
            "{function}: name '{name}' must be non-empty letters, digits, '-' or '_'"
        )));
    }
    let image = o
        .string("image")?
        .unwrap_or_else(|| ctx.provider.default_image().to_string());
    let instance_type = o
        .string("instance_type")?
        .unwrap_or_else(|| "t2.micro".to_string());
    Ok(InstanceSpec {
        name,
        image,
        instance_type,
        security_groups: Vec::new(),
    })
}

/// The spec maps `ec2::check_launch` takes: one map, or an array of them.
fn spec_maps(function: &str, specs: Dynamic) -> RhaiResult<Vec<Map>> {
    if specs.is_map() {
        return Ok(vec![specs.cast::<Map>()]);
    }
    let t = specs.type_name();
    let items = specs.into_array().map_err(|_| {
        script_error(format!(
            "{function}: expected a map like #{{name: \"web\"}} or an array of them, got {t}"
        ))
    })?;
    items
        .into_iter()
        .enumerate()
        .map(|(n, s)| {
            let t = s.type_name();
            s.try_cast::<Map>().ok_or_else(|| {
                script_error(format!(
                    "{function}: item {} is {t}, expected a map like #{{name: \"web\"}}",
                    n + 1
                ))
            })
        })
        .collect()
}

/// `ec2::check_launch`: every spec's name, image and instance type as
/// `ec2::launch` checks them, all errors at once; creates nothing.
fn check_launch(ctx: &LabContext, specs: Dynamic) -> RhaiResult<()> {
    const F: &str = "ec2::check_launch";
    let mut errors = Vec::new();
    for spec in spec_maps(F, specs)? {
        let o = Options::new(F, &spec, SPEC_KEYS, &["name"])?;
        let s = spec_basics(ctx, F, &o)?;
        if let Err(e) = ctx.provider.check_spec(&s.image, &s.instance_type) {
            errors.push(format!("'{}': {e}", s.name));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(script_error(format!("{F}: {}", errors.join("; "))))
    }
}

/// Reads an instance spec map, resolving groups given by name.
fn spec_from_map(ctx: &LabContext, spec: Map) -> RhaiResult<InstanceSpec> {
    let o = Options::new("ec2::launch", &spec, SPEC_KEYS, &["name"])?;
    let InstanceSpec {
        name,
        image,
        instance_type,
        ..
    } = spec_basics(ctx, "ec2::launch", &o)?;
    let mut security_groups = Vec::new();
    if let Some(groups) = o.get("security_groups") {
        let groups = groups.clone().into_array().map_err(|t| {
            script_error(format!(
                "ec2::launch: `security_groups` must be an array of security groups, got {t}"
            ))
        })?;
        for g in groups {
            if let Some(sg) = g.clone().try_cast::<SecurityGroup>() {
                security_groups.push(sg.id);
            } else if let Ok(name) = g.clone().into_immutable_string() {
                security_groups.push(super::sg::group_id_by_name(ctx, &name)?);
            } else {
                return Err(script_error(format!(
                    "ec2::launch: `security_groups` items must be security groups (from sg::ensure) or names, got {}",
                    g.type_name()
                )));
            }
        }
    }
    Ok(InstanceSpec {
        name,
        image,
        instance_type,
        security_groups,
    })
}

fn launch_many(ctx: &LabContext, specs: Vec<InstanceSpec>) -> RhaiResult<Vec<Instance>> {
    ctx.check_cancel()?;
    let provider = ctx.provider()?;
    let results = ctx.block_on(futures_util::future::join_all(
        specs.iter().map(|s| provider.launch(s)),
    ));
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (spec, r) in specs.iter().zip(results) {
        match r {
            Ok((inst, changed)) => {
                if changed {
                    ctx.changed();
                }
                out.push(inst);
            }
            Err(e) => errors.push(format!("'{}': {e}", spec.name)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(script_error(format!("ec2::launch: {}", errors.join("; "))))
    }
}

fn describe(i: &Instance) -> String {
    format!(
        "Instance({} {} private {} public {}:{} {})",
        i.name, i.id, i.private_ip, i.public_ip, i.ssh_port, i.state
    )
}

pub fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    engine.register_type_with_name::<Instance>("Instance");
    macro_rules! getter {
        ($prop:literal, $ty:literal, $doc:literal, $f:expr) => {
            func(concat!("get$", $prop), &["this: Instance", $ty], $doc)
                .register_into_engine(engine, $f);
        };
    }
    getter!(
        "id",
        "String",
        "The provider's instance id.",
        |i: &mut Instance| i.id.clone()
    );
    getter!(
        "name",
        "String",
        "The instance's name within the lab.",
        |i: &mut Instance| i.name.clone()
    );
    getter!(
        "private_ip",
        "String",
        "Address on the lab's private network.",
        |i: &mut Instance| i.private_ip.clone()
    );
    getter!(
        "public_ip",
        "String",
        "Address labrun (the operator) reaches the instance at.",
        |i: &mut Instance| i.public_ip.clone()
    );
    getter!(
        "ssh_port",
        "i64",
        "SSH port at `public_ip`.",
        |i: &mut Instance| i.ssh_port as i64
    );
    getter!(
        "state",
        "String",
        "`pending`, `running`, `stopped`, `terminated` (as of when this value was read).",
        |i: &mut Instance| i.state.clone()
    );
    getter!(
        "user",
        "String",
        "The login user (`ubuntu`).",
        |i: &mut Instance| i.user.clone()
    );
    getter!("image", "String", "Image name.", |i: &mut Instance| i
        .image
        .clone());
    getter!(
        "instance_type",
        "String",
        "Instance type (`t2.micro`, ...).",
        |i: &mut Instance| i.instance_type.clone()
    );
    getter!(
        "security_groups",
        "Array",
        "Ids of the attached security groups.",
        |i: &mut Instance| i
            .security_groups
            .iter()
            .map(|g| Dynamic::from(g.clone()))
            .collect::<Array>()
    );
    engine.register_fn("to_string", |i: &mut Instance| describe(i));
    engine.register_fn("to_debug", |i: &mut Instance| describe(i));

    let c = ctx.clone();
    func(
        "terminate",
        &["this: Instance", "bool"],
        "Terminates the instance; `false` if it was already gone.",
    )
    .register_into_engine(engine, move |i: &mut Instance| -> RhaiResult<bool> {
        c.check_cancel()?;
        let p = c.provider()?;
        let changed = c
            .block_on(p.terminate(&i.id))
            .map_err(|e| provider_error("Instance.terminate", e))?;
        if changed {
            c.changed();
            i.state = "terminated".into();
        }
        Ok(changed)
    });

    let mut m = Module::new();
    m.set_doc("//! Instances of the lab, on the run's provider (`--provider`).");
    let internal = |name: &str, params: &[&str], doc: &str| -> FuncRegistration {
        func(name, params, doc).with_namespace(FnNamespace::Internal)
    };

    let c = ctx.clone();
    internal(
        "launch",
        &["spec: Map", "Instance"],
        "Launches `#{name, image, instance_type, security_groups}` and waits until it
        runs. `image` defaults to `debian-12` locally and `ubuntu-22.04` on AWS;
        `instance_type` to `t2.micro`. Idempotent: an instance of that name in this lab
        is returned as it is.",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, spec: Map| -> RhaiResult<Instance> {
            at_call(&nctx, || {
                let spec = spec_from_map(&c, spec)?;
                Ok(launch_many(&c, vec![spec])?.remove(0))
            })
        },
    );

    let c = ctx.clone();
    internal(
        "launch",
        &["specs: Array", "Array"],
        "Launches several instances concurrently; returns them in the same order.",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, specs: Array| -> RhaiResult<Array> {
            at_call(&nctx, || {
                let mut parsed = Vec::new();
                for (n, s) in specs.into_iter().enumerate() {
                    let t = s.type_name();
                    let map = s.try_cast::<Map>().ok_or_else(|| {
                        script_error(format!(
                            "ec2::launch: item {} is {t}, expected a map like #{{name: \"web\"}}",
                            n + 1
                        ))
                    })?;
                    parsed.push(spec_from_map(&c, map)?);
                }
                Ok(launch_many(&c, parsed)?
                    .into_iter()
                    .map(Dynamic::from)
                    .collect())
            })
        },
    );

    let c = ctx.clone();
    internal(
        "check_launch",
        &["specs: Dynamic", "()"],
        "Checks instance specs (a map or an array of maps, as `ec2::launch` takes them)
        without launching anything or asking the provider: a bad `name`, an unknown
        `image` or `instance_type` throws the error `ec2::launch` would, so a playbook
        can refuse its parameters before it creates anything. `security_groups` are
        not looked up (they may not exist yet).",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, specs: Dynamic| -> RhaiResult<()> {
            at_call(&nctx, || check_launch(&c, specs))
        },
    );

    let c = ctx.clone();
    internal("instances", &["Array"], "The lab's instances.").set_into_module(
        &mut m,
        move |nctx: NativeCallContext| -> RhaiResult<Array> {
            at_call(&nctx, || {
                let p = c.provider()?;
                let list = c
                    .block_on(p.instances())
                    .map_err(|e| provider_error("ec2::instances", e))?;
                Ok(list.into_iter().map(Dynamic::from).collect())
            })
        },
    );

    let c = ctx.clone();
    internal(
        "find",
        &["name: string", "Dynamic"],
        "The lab's instance `name`, or `()` if there is none.",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, name: &str| -> RhaiResult<Dynamic> {
            at_call(&nctx, || {
                let p = c.provider()?;
                let list = c
                    .block_on(p.instances())
                    .map_err(|e| provider_error("ec2::find", e))?;
                Ok(find_named(list, name, |i| &i.name))
            })
        },
    );

    engine.register_static_module("ec2", m.into());
}
