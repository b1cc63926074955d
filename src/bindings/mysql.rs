//! `mysql::` — connections to MySQL/MariaDB servers, and the `Db` type.
//!
//! Errors thrown here are maps `#{message, code, state}`: `code` and
//! `state` are the server's (e.g. 1045, "28000") or `()` when the server
//! said nothing (unreachable, timed out). Uncaught, they print their
//! message; caught, `e.code` tells them apart.

use std::sync::Arc;

use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, FnNamespace, Map, Module, NativeCallContext,
};

use super::args::Options;
use super::{LabContext, at_call, func};
use crate::engine::{RhaiResult, script_error};
use crate::mysql::{ConnectOptions, Db, MysqlError, Route, SqlParams, SqlRow, SqlValue};
use crate::ssh::Session;

const CONNECT_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "database",
    "via",
    "timeout",
    "query_timeout",
];

/// A mysql failure as a playbook error `#{message, code, state}`.
fn mysql_error(function: &str, e: MysqlError) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert("message".into(), format!("{function}: {e}").into());
    m.insert(
        "code".into(),
        e.code()
            .map_or(Dynamic::UNIT, |c| Dynamic::from_int(c.into())),
    );
    m.insert(
        "state".into(),
        e.state().map_or(Dynamic::UNIT, |s| s.to_string().into()),
    );
    Box::new(EvalAltResult::ErrorRuntime(m.into(), rhai::Position::NONE))
}

fn options(ctx: &LabContext, map: &Map) -> RhaiResult<ConnectOptions> {
    let o = Options::new("mysql::connect", map, CONNECT_KEYS, &["host", "user"])?;
    let mut c = ConnectOptions::new(
        o.string("host")?.unwrap_or_default(),
        o.string("user")?.unwrap_or_default(),
    );
    if c.host.is_empty() {
        return Err(o.error("`host` is empty"));
    }
    c.password = o.string("password")?;
    c.database = o.string("database")?;
    if let Some(port) = o.port("port")? {
        c.port = port;
    }
    if let Some(t) = o.seconds("timeout")? {
        c.connect_timeout = t;
    }
    if let Some(t) = o.seconds("query_timeout")? {
        c.query_timeout = t;
    }
    c.cancel = Some(ctx.cancel.clone());
    Ok(c)
}

/// A Rhai value as a SQL parameter.
fn sql_value(function: &str, which: &str, v: Dynamic) -> RhaiResult<SqlValue> {
    let type_name = v.type_name();
    if v.is_unit() {
        return Ok(SqlValue::Null);
    }
    if let Ok(i) = v.as_int() {
        return Ok(SqlValue::Int(i));
    }
    if let Ok(f) = v.as_float() {
        return Ok(SqlValue::Float(f));
    }
    if let Ok(b) = v.as_bool() {
        return Ok(SqlValue::Int(b.into()));
    }
    if let Ok(c) = v.as_char() {
        return Ok(SqlValue::Text(c.to_string()));
    }
    if v.is_string() {
        return Ok(SqlValue::Text(v.into_string().expect("checked string")));
    }
    if v.is_blob() {
        return Ok(SqlValue::Bytes(v.cast::<Blob>()));
    }
    Err(mysql_error(
        function,
        MysqlError::Param {
            which: which.to_string(),
            reason: format!(
                "a {type_name} cannot be a SQL value (use a string, number, bool, blob or ())"
            ),
        },
    ))
}

/// `[a, b]` for `?` placeholders, `#{name: v}` for `:name` ones.
fn sql_params(function: &str, params: Dynamic) -> RhaiResult<SqlParams> {
    let type_name = params.type_name();
    if params.is_unit() {
        return Ok(SqlParams::None);
    }
    if params.is_array() {
        let list = params.cast::<Array>();
        if list.is_empty() {
            return Ok(SqlParams::None);
        }
        return list
            .into_iter()
            .enumerate()
            .map(|(i, v)| sql_value(function, &(i + 1).to_string(), v))
            .collect::<RhaiResult<Vec<_>>>()
            .map(SqlParams::Positional);
    }
    if params.is_map() {
        return params
            .cast::<Map>()
            .into_iter()
            .map(|(k, v)| Ok((k.to_string(), sql_value(function, &format!(":{k}"), v)?)))
            .collect::<RhaiResult<Vec<_>>>()
            .map(SqlParams::Named);
    }
    Err(script_error(format!(
        "{function}: params must be an array (for `?`) or a map (for `:name`), got {type_name}"
    )))
}

fn to_dynamic(v: SqlValue) -> Dynamic {
    match v {
        SqlValue::Null => Dynamic::UNIT,
        SqlValue::Int(i) => i.into(),
        SqlValue::Float(f) => f.into(),
        SqlValue::Text(s) => s.into(),
        SqlValue::Bytes(b) => Dynamic::from_blob(b),
    }
}

fn rows_to_array(rows: Vec<SqlRow>) -> Array {
    rows.into_iter()
        .map(|row| {
            let map: Map = row
                .into_iter()
                .map(|(k, v)| (k.into(), to_dynamic(v)))
                .collect();
            Dynamic::from_map(map)
        })
        .collect()
}

fn query(ctx: &LabContext, db: &Db, sql: &str, params: Dynamic) -> RhaiResult<Array> {
    const F: &str = "Db.query";
    ctx.check_cancel()?;
    let params = sql_params(F, params)?;
    let rows = ctx
        .block_on(db.query(sql, params))
        .map_err(|e| mysql_error(F, e))?;
    Ok(rows_to_array(rows))
}

fn exec(ctx: &LabContext, db: &Db, sql: &str, params: Dynamic) -> RhaiResult<i64> {
    const F: &str = "Db.exec";
    ctx.check_cancel()?;
    let params = sql_params(F, params)?;
    let n = ctx
        .block_on(db.exec(sql, params))
        .map_err(|e| mysql_error(F, e))?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

fn server_map(db: &Db) -> Map {
    let mut m = Map::new();
    m.insert("version".into(), db.server.version.clone().into());
    m.insert("flavor".into(), db.server.flavor.as_str().into());
    m.insert("full".into(), db.server.full.clone().into());
    m
}

fn connect(ctx: &LabContext, spec: Map) -> RhaiResult<Db> {
    const F: &str = "mysql::connect";
    let opts = options(ctx, &spec)?;
    // A password the playbook gives is a secret like `secret()`'s.
    if let Some(pw) = &opts.password {
        ctx.reporter.redactor().add(pw);
    }
    ctx.check_cancel()?;
    let route = match spec.get("via").filter(|v| !v.is_unit()) {
        None => None,
        Some(v) => {
            let session = v.clone().try_cast::<Session>().ok_or_else(|| {
                script_error(format!(
                    "{F}: `via` must be an ssh session (from ssh::connect), got {}",
                    v.type_name()
                ))
            })?;
            let local_port = ctx
                .block_on(session.forward(&opts.host, opts.port))
                .map_err(|e| script_error(format!("{F}: tunnel through {session}: {e}")))?;
            Some(Route {
                local_port,
                via: session.target().label.clone(),
                keep: Box::new(session),
            })
        }
    };
    ctx.block_on(Db::connect(&opts, route))
        .map_err(|e| mysql_error(F, e))
}

pub fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    engine.register_type_with_name::<Db>("Db");
    engine.register_fn("to_string", |db: &mut Db| db.to_string());
    engine.register_fn("to_debug", |db: &mut Db| db.to_string());

    for (params, with) in [
        (&["this: Db", "sql: string", "Array"][..], false),
        (
            &["this: Db", "sql: string", "params: Dynamic", "Array"][..],
            true,
        ),
    ] {
        let c = ctx.clone();
        let doc = "Runs `sql` and returns its rows as an array of maps (column name → value).
            Values are typed by column: integers, floats (DECIMAL too; integers when it has
            no fractional digits), strings (text, dates as `YYYY-MM-DD[ HH:MM:SS]`, times),
            blobs (binary that is not UTF-8), `()` for NULL. `params` binds `?`
            placeholders from an array or `:name` ones from a map (a prepared statement);
            without it the statement is sent as text. Throws `#{message, code, state}`.";
        let f = func("query", params, doc);
        if with {
            f.register_into_engine(engine, move |db: &mut Db, sql: &str, p: Dynamic| {
                query(&c, db, sql, p)
            });
        } else {
            f.register_into_engine(engine, move |db: &mut Db, sql: &str| {
                query(&c, db, sql, Dynamic::UNIT)
            });
        }
    }
    for (params, with) in [
        (&["this: Db", "sql: string", "i64"][..], false),
        (
            &["this: Db", "sql: string", "params: Dynamic", "i64"][..],
            true,
        ),
    ] {
        let c = ctx.clone();
        let doc = "Runs a statement (INSERT, UPDATE, CREATE, GRANT, ...) and returns the
            number of rows it affected. `params` as for `query`. It does not mark the step
            changed: the playbook knows whether the statement changed something (call
            `changed()`).";
        let f = func("exec", params, doc);
        if with {
            f.register_into_engine(engine, move |db: &mut Db, sql: &str, p: Dynamic| {
                exec(&c, db, sql, p)
            });
        } else {
            f.register_into_engine(engine, move |db: &mut Db, sql: &str| {
                exec(&c, db, sql, Dynamic::UNIT)
            });
        }
    }
    func(
        "server",
        &["this: Db", "Map"],
        "The server answering: `#{version, flavor, full}` — `version` like `10.11.19`,
        `flavor` `mysql` or `mariadb`, `full` the whole `VERSION()` string.",
    )
    .register_into_engine(engine, |db: &mut Db| server_map(db));
    let c = ctx.clone();
    func(
        "close",
        &["this: Db", "()"],
        "Closes the connection (and its tunnel, if any). Later calls on it throw;
        closing twice is harmless.",
    )
    .register_into_engine(engine, move |db: &mut Db| -> RhaiResult<()> {
        c.block_on(db.close())
            .map_err(|e| mysql_error("Db.close", e))
    });

    let mut m = Module::new();
    m.set_doc("//! MySQL and MariaDB servers, reached directly or through an SSH session.");
    let c = ctx.clone();
    func(
        "connect",
        &["options: Map", "Db"],
        "Connects over TCP to `#{host, port, user, password, database, via, timeout,
        query_timeout}` (`port` 3306, `timeout` 30 s for connecting, `query_timeout` 600 s
        for each statement: one that takes longer, or is interrupted by Ctrl-C, is
        stopped on the server with KILL QUERY and throws). With `via: session` the
        connection is tunnelled through that SSH session, so the server sees it come
        from that host. Throws `#{message, code, state}`: `code` is the server's error
        (1045 access denied, 1130 host not allowed, 1049 unknown database) or `()`.",
    )
    .with_namespace(FnNamespace::Internal)
    .set_into_module(&mut m, move |nctx: NativeCallContext, spec: Map| {
        at_call(&nctx, || connect(&c, spec))
    });
    func(
        "native_password_hash",
        &["password: string", "String"],
        "The `mysql_native_password` hash of `password` (`*` and 40 hex digits, as
        `mysql.user` stores it), computed by labrun so that the password itself never
        appears in SQL: servers show statements in their process list and logs.",
    )
    .with_namespace(FnNamespace::Internal)
    .set_into_module(&mut m, |password: &str| {
        crate::mysql::native_password_hash(password)
    });
    engine.register_static_module("mysql", m.into());
}
