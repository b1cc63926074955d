//! Values as playbooks see them, and their conversion from what the server
//! sends. The text protocol sends every value as bytes; the binary protocol
//! (prepared statements) sends some typed. Either way the column's type
//! decides: integers become `Int`, floating and fixed-point numbers `Float`
//! (a DECIMAL without fractional digits, such as `SUM()` of integers,
//! `Int`), dates and times their canonical text, text columns `Text`,
//! binary columns `Text` when they hold UTF-8 and `Bytes` otherwise, NULL
//! `Null`.

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Column, Value};

/// The character set number MySQL uses for binary (non-text) data.
const BINARY_CHARSET: u16 = 63;

/// One value going to or coming from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl SqlValue {
    /// The driver's value for a query parameter.
    pub(crate) fn into_driver(self) -> Value {
        match self {
            SqlValue::Null => Value::NULL,
            SqlValue::Int(i) => Value::Int(i),
            SqlValue::Float(f) => Value::Double(f),
            SqlValue::Text(s) => Value::Bytes(s.into_bytes()),
            SqlValue::Bytes(b) => Value::Bytes(b),
        }
    }
}

/// Converts one value of a result row, guided by its column.
pub fn from_column(value: Value, column: &Column) -> SqlValue {
    let ty = column.column_type();
    match value {
        Value::NULL => SqlValue::Null,
        Value::Int(i) => SqlValue::Int(i),
        Value::UInt(u) => unsigned(u),
        // A FLOAT column holds an f32: widen through its shortest decimal
        // text so 1.1 stays 1.1 rather than 1.100000023841858.
        Value::Float(f) => SqlValue::Float(f.to_string().parse().unwrap_or(f as f64)),
        Value::Double(d) => SqlValue::Float(d),
        Value::Date(y, mo, d, h, mi, s, us) => SqlValue::Text(format_date(
            ty,
            column.decimals(),
            (y, mo, d),
            (h, mi, s, us),
        )),
        Value::Time(neg, days, h, mi, s, us) => SqlValue::Text(format_time(
            column.decimals(),
            neg,
            days * 24 + u32::from(h),
            mi,
            s,
            us,
        )),
        Value::Bytes(bytes) => from_bytes(bytes, column),
    }
}

fn unsigned(u: u64) -> SqlValue {
    match i64::try_from(u) {
        Ok(i) => SqlValue::Int(i),
        // Beyond i64 (BIGINT UNSIGNED near its top): exact as text.
        Err(_) => SqlValue::Text(u.to_string()),
    }
}

/// Text-protocol bytes (or binary-protocol strings and decimals).
fn from_bytes(bytes: Vec<u8>, column: &Column) -> SqlValue {
    use ColumnType::*;
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    match column.column_type() {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => {
            let t = text();
            if column.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
                t.parse::<u64>().map(unsigned).unwrap_or(SqlValue::Text(t))
            } else {
                t.parse::<i64>()
                    .map(SqlValue::Int)
                    .unwrap_or(SqlValue::Text(t))
            }
        }
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
            let t = text();
            t.parse::<f64>()
                .map(SqlValue::Float)
                .unwrap_or(SqlValue::Text(t))
        }
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
            let t = text();
            if column.decimals() == 0
                && let Ok(i) = t.parse::<i64>()
            {
                return SqlValue::Int(i);
            }
            t.parse::<f64>()
                .map(SqlValue::Float)
                .unwrap_or(SqlValue::Text(t))
        }
        MYSQL_TYPE_BIT => {
            if bytes.len() <= 8 {
                unsigned(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
            } else {
                SqlValue::Bytes(bytes)
            }
        }
        MYSQL_TYPE_NULL => SqlValue::Null,
        MYSQL_TYPE_GEOMETRY => SqlValue::Bytes(bytes),
        _ if column.character_set() == BINARY_CHARSET => match String::from_utf8(bytes) {
            Ok(s) => SqlValue::Text(s),
            Err(e) => SqlValue::Bytes(e.into_bytes()),
        },
        _ => SqlValue::Text(text()),
    }
}

/// `YYYY-MM-DD` for DATE, `YYYY-MM-DD HH:MM:SS[.fff]` otherwise, with as
/// many fractional digits as the column declares (as the text protocol
/// prints them).
fn format_date(
    ty: ColumnType,
    decimals: u8,
    (y, mo, d): (u16, u8, u8),
    (h, mi, s, us): (u8, u8, u8, u32),
) -> String {
    let date = format!("{y:04}-{mo:02}-{d:02}");
    if matches!(
        ty,
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
    ) {
        return date;
    }
    format!("{date} {h:02}:{mi:02}:{s:02}{}", fraction(decimals, us))
}

fn format_time(decimals: u8, neg: bool, hours: u32, mi: u8, s: u8, us: u32) -> String {
    let sign = if neg { "-" } else { "" };
    format!("{sign}{hours:02}:{mi:02}:{s:02}{}", fraction(decimals, us))
}

fn fraction(decimals: u8, us: u32) -> String {
    match decimals {
        1..=6 => {
            let digits = format!("{us:06}");
            format!(".{}", &digits[..usize::from(decimals)])
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::consts::ColumnType::*;

    fn col(ty: ColumnType) -> Column {
        Column::new(ty).with_character_set(45)
    }

    fn text(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn text_protocol_numbers_follow_the_column_type() {
        assert_eq!(
            from_column(text("-42"), &col(MYSQL_TYPE_LONG)),
            SqlValue::Int(-42)
        );
        assert_eq!(
            from_column(text("2.5"), &col(MYSQL_TYPE_DOUBLE)),
            SqlValue::Float(2.5)
        );
        let unsigned_big = col(MYSQL_TYPE_LONGLONG).with_flags(ColumnFlags::UNSIGNED_FLAG);
        assert_eq!(
            from_column(text("18446744073709551615"), &unsigned_big),
            SqlValue::Text("18446744073709551615".into())
        );
        assert_eq!(
            from_column(text("7"), &col(MYSQL_TYPE_YEAR)),
            SqlValue::Int(7)
        );
    }

    #[test]
    fn decimals_are_floats_unless_they_have_no_fraction() {
        let scaled = col(MYSQL_TYPE_NEWDECIMAL).with_decimals(2);
        assert_eq!(from_column(text("12.34"), &scaled), SqlValue::Float(12.34));
        let whole = col(MYSQL_TYPE_NEWDECIMAL).with_decimals(0);
        assert_eq!(from_column(text("600"), &whole), SqlValue::Int(600));
    }

    #[test]
    fn dates_and_times_are_canonical_text() {
        let dt = col(MYSQL_TYPE_DATETIME).with_decimals(3);
        assert_eq!(
            from_column(Value::Date(2024, 2, 29, 13, 5, 9, 120_000), &dt),
            SqlValue::Text("2024-02-29 13:05:09.120".into())
        );
        assert_eq!(
            from_column(Value::Date(2024, 2, 29, 0, 0, 0, 0), &col(MYSQL_TYPE_DATE)),
            SqlValue::Text("2024-02-29".into())
        );
        assert_eq!(
            from_column(Value::Time(true, 1, 2, 3, 4, 0), &col(MYSQL_TYPE_TIME)),
            SqlValue::Text("-26:03:04".into())
        );
    }

    #[test]
    fn binary_columns_are_text_when_utf8_and_bytes_otherwise() {
        let bin = Column::new(MYSQL_TYPE_BLOB).with_character_set(BINARY_CHARSET);
        assert_eq!(
            from_column(text("héllo"), &bin),
            SqlValue::Text("héllo".into())
        );
        assert_eq!(
            from_column(Value::Bytes(vec![0xff, 0x00]), &bin),
            SqlValue::Bytes(vec![0xff, 0x00])
        );
        assert_eq!(
            from_column(Value::Bytes(vec![1, 0]), &col(MYSQL_TYPE_BIT)),
            SqlValue::Int(256)
        );
    }

    #[test]
    fn float_columns_keep_their_short_form() {
        assert_eq!(
            from_column(Value::Float(1.1), &col(MYSQL_TYPE_FLOAT)),
            SqlValue::Float(1.1)
        );
        assert_eq!(
            from_column(Value::UInt(5), &col(MYSQL_TYPE_LONG)),
            SqlValue::Int(5)
        );
    }
}
