//! The `mysql` module against a real MariaDB: the private test server that
//! `scripts/setup.sh` (`ensure_test_mariadb`) runs on 127.0.0.1, port
//! `$LABRUN_TEST_MYSQL_PORT` (default 33917), root password
//! `$LABRUN_TEST_MYSQL_PASSWORD`. Each test uses its own database.

use crate::harness::{Output, Test};

fn port() -> u16 {
    std::env::var("LABRUN_TEST_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(33917)
}

fn password() -> String {
    std::env::var("LABRUN_TEST_MYSQL_PASSWORD").unwrap_or_else(|_| "labrun-test-root".into())
}

/// Fails loudly when the test server is not there.
fn require_server() {
    let addr = format!("127.0.0.1:{}", port());
    if let Err(e) = std::net::TcpStream::connect(&addr) {
        panic!(
            "the test MariaDB is not answering on {addr} ({e}); start it with \
             `bash -c '. scripts/setup.sh && ensure_test_mariadb'`"
        );
    }
}

/// Runs `body` after `let db = mysql::connect(...)` as the test root.
fn run(body: &str) -> Output {
    require_server();
    let script = format!(
        "let db = mysql::connect(#{{ host: \"127.0.0.1\", port: {}, user: \"root\", password: \"{}\" }});\n{body}",
        port(),
        password()
    );
    Test::new().playbook("db.rhai", &script).run()
}

#[test]
fn values_round_trip_typed_in_both_protocols() {
    let out = run(r#"
        db.exec("CREATE DATABASE IF NOT EXISTS lr_types");
        db.exec("DROP TABLE IF EXISTS lr_types.t");
        db.exec("CREATE TABLE lr_types.t (id INT PRIMARY KEY, big BIGINT, price DECIMAL(10,2), " +
                "missing INT NULL, day DATE, at DATETIME, txt VARCHAR(64) CHARACTER SET utf8mb4, " +
                "ratio DOUBLE, bin VARBINARY(8))");
        let n = db.exec("INSERT INTO lr_types.t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [1, -9007199254740993, 12.34, (), "2024-02-29", "2024-02-29 13:05:09",
                         "héllo wörld ✓ 日本", 2.5, blob(2, 255)]);
        print(`inserted=${n}`);
        let text = db.query("SELECT * FROM lr_types.t");
        let binary = db.query("SELECT * FROM lr_types.t WHERE id = ?", [1]);
        for pair in [["text", text], ["binary", binary]] {
            let row = pair[1][0];
            for k in ["id", "big", "price", "missing", "day", "at", "txt", "ratio", "bin"] {
                print(`${pair[0]} ${k}=${type_of(row[k])}:${row[k]}`);
            }
        }
        let agg = db.query("SELECT SUM(id) AS s, COUNT(*) AS c, AVG(price) AS a FROM lr_types.t");
        print(`sum=${type_of(agg[0].s)}:${agg[0].s} count=${type_of(agg[0].c)}:${agg[0].c}`);
    "#);
    out.assert_code(0).assert_stderr_contains("inserted=1");
    for proto in ["text", "binary"] {
        for line in [
            "id=i64:1",
            "big=i64:-9007199254740993",
            "price=f64:12.34",
            "missing=():",
            "day=string:2024-02-29",
            "at=string:2024-02-29 13:05:09",
            "txt=string:héllo wörld ✓ 日本",
            "ratio=f64:2.5",
            "bin=blob:[ffff]",
        ] {
            out.assert_stderr_contains(&format!("{proto} {line}"));
        }
    }
    out.assert_stderr_contains("sum=i64:1 count=i64:1");
}

#[test]
fn exec_returns_affected_rows() {
    let out = run(r#"
        db.exec("CREATE DATABASE IF NOT EXISTS lr_exec");
        db.exec("DROP TABLE IF EXISTS lr_exec.t");
        db.exec("CREATE TABLE lr_exec.t (id INT PRIMARY KEY, v INT)");
        print(`insert=${db.exec("INSERT INTO lr_exec.t VALUES (1, 0), (2, 0), (3, 5)")}`);
        print(`update=${db.exec("UPDATE lr_exec.t SET v = ? WHERE v = ?", [5, 0])}`);
        print(`noop=${db.exec("UPDATE lr_exec.t SET v = 5")}`);
        print(`delete=${db.exec("DELETE FROM lr_exec.t WHERE id > :min", #{min: 1})}`);
    "#);
    out.assert_code(0)
        .assert_stderr_contains("insert=3")
        .assert_stderr_contains("update=2")
        .assert_stderr_contains("noop=0")
        .assert_stderr_contains("delete=2");
}

#[test]
fn params_are_bound_not_spliced() {
    let out = run(r#"
        let evil = "x' OR '1'='1";
        let r = db.query("SELECT ? AS s, ? AS n, ? AS f, ? AS b, ? AS z", [evil, 7, 0.5, true, ()]);
        print(`s=${r[0].s} n=${r[0].n} f=${r[0].f} b=${r[0].b} z=${type_of(r[0].z)}`);
        let named = db.query("SELECT :a + :b AS total", #{a: 40, b: 2});
        print(`total=${named[0].total}`);
        try { db.query("SELECT ?", [#{nested: 1}]); } catch (e) { print(`param error: ${e.message}`); }
    "#);
    out.assert_code(0)
        .assert_stderr_contains("s=x' OR '1'='1 n=7 f=0.5 b=1 z=()")
        .assert_stderr_contains("total=42")
        .assert_stderr_contains("param error: Db.query: parameter 1: a map cannot be a SQL value");
}

#[test]
fn server_reports_mariadb_and_its_version() {
    let out = run(r#"
        let s = db.server();
        print(`flavor=${s.flavor} version=${s.version} full=${s.full}`);
        print(`db=${db}`);
        let v = db.query("SELECT VERSION() AS v")[0].v;
        if !v.starts_with(s.version) { throw `version ${s.version} is not a prefix of ${v}`; }
    "#);
    out.assert_code(0)
        .assert_stderr_contains("flavor=mariadb version=1")
        .assert_stderr_contains(&format!("db=Db(root@127.0.0.1:{} mariadb 1", port()));
}

#[test]
fn wrong_password_is_error_1045_with_its_code() {
    require_server();
    let script = format!(
        r#"
        let opts = #{{ host: "127.0.0.1", port: {}, user: "root", password: "not-the-password" }};
        try {{ mysql::connect(opts); }} catch (e) {{ print(`caught code=${{e.code}} state=${{e.state}}`); }}
        mysql::connect(opts);
        "#,
        port()
    );
    let out = Test::new().playbook("deny.rhai", &script).run();
    out.assert_code(1)
        .assert_stderr_contains("caught code=1045 state=28000")
        .assert_stderr_contains(
            "mysql::connect: ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1'",
        );
}

#[test]
fn user_for_another_host_is_refused_with_its_code() {
    let out = run(&format!(
        r#"
        db.exec("CREATE USER IF NOT EXISTS 'lr_elsewhere'@'10.9.9.9' IDENTIFIED BY 'pw-elsewhere'");
        try {{
            mysql::connect(#{{ host: "127.0.0.1", port: {}, user: "lr_elsewhere", password: "pw-elsewhere" }});
            print("connected?!");
        }} catch (e) {{
            print(`refused code=${{e.code}}: ${{e.message}}`);
        }}
        "#,
        port()
    ));
    out.assert_code(0);
    assert!(
        out.stderr.contains("refused code=1045") || out.stderr.contains("refused code=1130"),
        "expected 1045 or 1130:\n{}",
        out.stderr
    );
}

#[test]
fn sql_errors_carry_code_and_closed_connections_say_so() {
    let out = run(r#"
        try { db.query("SELEC 1"); } catch (e) { print(`syntax code=${e.code}`); }
        try { db.query("SELECT * FROM lr_no_such_db.t"); } catch (e) { print(`missing code=${e.code}`); }
        print(`still usable=${db.query("SELECT 1 AS one")[0].one}`);
        db.close();
        db.close();
        db.query("SELECT 1");
    "#);
    out.assert_code(1)
        .assert_stderr_contains("syntax code=1064")
        .assert_stderr_contains("missing code=1146")
        .assert_stderr_contains("still usable=1")
        .assert_stderr_contains("Db.query: the connection to 127.0.0.1:")
        .assert_stderr_contains("is closed");
}

#[test]
fn unreachable_server_fails_without_a_code() {
    // A port nothing listens on: refused at once, no server code.
    let out = Test::new()
        .playbook(
            "down.rhai",
            r#"
            try { mysql::connect(#{ host: "127.0.0.1", port: 1, user: "root" }); }
            catch (e) { print(`code=${type_of(e.code)} message=${e.message}`); }
            "#,
        )
        .run();
    out.assert_code(0).assert_stderr_contains(
        "code=() message=mysql::connect: cannot connect to 127.0.0.1:1: Connection refused",
    );
}

#[test]
fn connect_options_are_checked() {
    let out = Test::new()
        .playbook(
            "bad.rhai",
            r#"mysql::connect(#{ host: "127.0.0.1", user: "root", pasword: "x" });"#,
        )
        .run();
    out.assert_code(1)
        .assert_stderr_contains("mysql::connect: unknown key `pasword`");
}

#[test]
fn mysql_stdlib_modules_compile_and_document_themselves() {
    Test::new()
        .file(
            "uses.rhai",
            r#"
            import "mysql_server" as mysqld;
            import "mysql_client" as client;
            fn lab(s) {
                mysqld::install(s);
                if mysqld::set_bind_address(s, "0.0.0.0") { mysqld::restart(s); }
                mysqld::secure_installation(s, #{ root_password: "x", password_policy: "medium" });
                mysqld::create_database(s, "shop");
                mysqld::create_user(s, #{ user: "u", password: "p", host: "10.0.0.2", grants: ["SELECT ON shop.*"] });
                client::install(s);
                client::query(s, #{ host: "10.0.0.1", user: "u", password: "p", sql: "SHOW DATABASES" });
            }
            "#,
        )
        .args(&["validate", "uses.rhai"])
        .run()
        .assert_code(0);
    let docs = Test::new().arg("docs").run();
    docs.assert_code(0);
    for f in [
        "mysql_server::install(s)",
        "mysql_server::set_bind_address(s, addr)",
        "mysql_server::secure_installation(s, opts)",
        "mysql_server::create_database(s, name)",
        "mysql_server::create_user(s, spec)",
        "mysql_server::restart(s)",
        "mysql_client::install(s)",
        "mysql_client::query(s, opts)",
        "mysql::connect",
    ] {
        docs.assert_stdout_contains(f);
    }
}
