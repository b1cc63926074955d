//! Grants as data (stdlib/mysql_grants.rhai), without a server: what a
//! playbook asks for and what SHOW GRANTS reports become statements in
//! which nothing from either is pasted unquoted, and anything that is not
//! a plain grant is refused naming it. (The MariaDB end-to-end test runs
//! the same code against a server.)

use crate::harness::Test;

const CASES: &str = r#"
import "mysql_grants" as g;
let acct = "'u'@'10.0.0.2'";
let none = #{};
let show = |want| g::statements(acct, none, g::wanted("t", want), false);

print(`A ${show.call([#{ privileges: ["ALL"], database: "%" }])}`);
print(`B ${show.call([#{ privileges: ["select", "Insert"], database: "my_db" }])}`);
print(`C ${show.call([#{ privileges: ["SELECT"], database: "my_db", table: "t_1" }])}`);
print(`D ${show.call(["ALL ON `a``b`.*"])}`);
print(`E ${show.call(["SELECT, INSERT ON shop.*", "select on shop.*"])}`);
print(`F ${show.call([#{ privileges: ["SELECT", "PROCESS"], database: "*" }])}`);

for bad in [
    "SELECT ON shop.*; DROP DATABASE mysql",
    "SELECT\t;DROP TABLE x ON shop.*",
    "SELECT ON shop.* TO root",
    "SELECT (col) ON shop.t",
    "PROCESS ON shop.*",
    "SELECT ON shop",
    "SELECT ON a.* ON b.*",
    "SELECT ON `shop`.*`x`",
    #{ privileges: ["SELECT; DROP"], database: "shop" },
    #{ privileges: ["SELECT"], database: "" },
    #{ privileges: ["SELECT"], database: "*", table: "t" },
    #{ privileges: [], database: "shop" },
    #{ privileges: ["SELECT"], db: "shop" },
] {
    try { show.call([bad]); print(`ACCEPTED ${bad}`); }
    catch (e) { print(`R ${e}`); }
}

// What the server reports is read into names and re-quoted: a stored name
// holding quotes and SQL is only ever an identifier.
let have = g::granted([
    ["GRANT USAGE ON *.* TO `u`@`10.0.0.2`"],
    ["GRANT SELECT, INSERT ON `x``; DROP DATABASE mysql; --`.* TO `u`@`10.0.0.2`"],
    ["GRANT SELECT (`id`), APPLICATION_PASSWORD_ADMIN ON `shop`.`t` TO `u`@`10.0.0.2` WITH GRANT OPTION"],
    ["GRANT `role1`@`%` TO `u`@`10.0.0.2`"],
]);
print(`H ${g::statements(acct, have, g::wanted("t", ["SELECT ON shop.*"]), false)}`);
"#;

fn line<'a>(stderr: &'a str, tag: &str) -> &'a str {
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no {tag} line:\n{stderr}"))
}

#[test]
fn grants_are_quoted_escaped_and_checked() {
    let out = Test::new().playbook("grants.rhai", CASES).run();
    out.assert_code(0);
    let e = &out.stderr;
    assert_eq!(
        line(e, "A"),
        r#"["GRANT ALL PRIVILEGES ON `\\%`.* TO 'u'@'10.0.0.2';"]"#,
        "a database-level `%` is escaped"
    );
    assert_eq!(
        line(e, "B"),
        r#"["GRANT INSERT, SELECT ON `my\\_db`.* TO 'u'@'10.0.0.2';"]"#
    );
    assert_eq!(
        line(e, "C"),
        r#"["GRANT SELECT ON `my_db`.`t_1` TO 'u'@'10.0.0.2';"]"#,
        "a table-level grant's names are literal already"
    );
    assert_eq!(
        line(e, "D"),
        r#"["GRANT ALL PRIVILEGES ON `a``b`.* TO 'u'@'10.0.0.2';"]"#
    );
    assert_eq!(
        line(e, "E"),
        r#"["GRANT INSERT, SELECT ON `shop`.* TO 'u'@'10.0.0.2';"]"#
    );
    assert_eq!(
        line(e, "F"),
        r#"["GRANT PROCESS, SELECT ON *.* TO 'u'@'10.0.0.2';"]"#
    );
    assert!(!e.contains("ACCEPTED"), "{e}");
    let refused = e.lines().filter(|l| l.trim().starts_with("R ")).count();
    assert_eq!(refused, 13, "every bad grant refused:\n{e}");
    for needle in [
        "'SELECT; DROP' is not a privilege labrun grants",
        "'PROCESS' is not a privilege labrun grants on a database or table",
        "the target must be *.*, db.* or db.table",
        "must read 'PRIVILEGE, ... ON database.table'",
        "database must be \"*\" or a name of 1 to 64 characters",
        "a table needs a database",
        "names no privilege",
        "unknown key 'db'",
    ] {
        assert!(e.contains(needle), "missing {needle:?}:\n{e}");
    }
    assert_eq!(
        line(e, "H"),
        concat!(
            r#"["GRANT SELECT ON `shop`.* TO 'u'@'10.0.0.2';", "#,
            r#""REVOKE ALL PRIVILEGES ON `shop`.`t` FROM 'u'@'10.0.0.2';", "#,
            r#""REVOKE GRANT OPTION ON `shop`.`t` FROM 'u'@'10.0.0.2';", "#,
            r#""REVOKE ALL PRIVILEGES ON `x``; DROP DATABASE mysql; --`.* FROM 'u'@'10.0.0.2';"]"#
        )
    );
}
