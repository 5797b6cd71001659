//! Field values as kintone sends them in records and webhooks (`{"type": T, "value": V}`), typed,
//! with an explicit empty state and a rendering as text a person expects.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Separator kintone's own UI uses between the items of a list value.
pub const LIST_SEPARATOR: &str = "、";

/// A field's `type` as kintone names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `SINGLE_LINE_TEXT`
    SingleLineText,
    /// `MULTI_LINE_TEXT`
    MultiLineText,
    /// `RICH_TEXT` (HTML)
    RichText,
    /// `LINK` (web, phone or mail; the protocol is not in records)
    Link,
    /// `NUMBER`
    Number,
    /// `CALC` (read-only)
    Calc,
    /// `CHECK_BOX`
    CheckBox,
    /// `MULTI_SELECT`
    MultiSelect,
    /// `CATEGORY` (read-only)
    Category,
    /// `RADIO_BUTTON`
    RadioButton,
    /// `DROP_DOWN`
    DropDown,
    /// `DATE`
    Date,
    /// `TIME`
    Time,
    /// `DATETIME`
    DateTime,
    /// `CREATED_TIME`
    CreatedTime,
    /// `UPDATED_TIME`
    UpdatedTime,
    /// `USER_SELECT`
    UserSelect,
    /// `ORGANIZATION_SELECT`
    OrganizationSelect,
    /// `GROUP_SELECT`
    GroupSelect,
    /// `STATUS_ASSIGNEE` (read-only)
    StatusAssignee,
    /// `CREATOR`
    Creator,
    /// `MODIFIER`
    Modifier,
    /// `RECORD_NUMBER`
    RecordNumber,
    /// `__ID__` (`$id`)
    Id,
    /// `__REVISION__` (`$revision`)
    Revision,
    /// `STATUS` (process management; read-only)
    Status,
    /// `FILE`
    File,
    /// `SUBTABLE`
    Subtable,
    /// A type this crate does not know, as sent.
    Other(String),
}

impl FieldType {
    /// The type for a `type` string; unknown names become [`FieldType::Other`].
    pub fn parse(name: &str) -> Self {
        match name {
            "SINGLE_LINE_TEXT" => Self::SingleLineText,
            "MULTI_LINE_TEXT" => Self::MultiLineText,
            "RICH_TEXT" => Self::RichText,
            "LINK" => Self::Link,
            "NUMBER" => Self::Number,
            "CALC" => Self::Calc,
            "CHECK_BOX" => Self::CheckBox,
            "MULTI_SELECT" => Self::MultiSelect,
            "CATEGORY" => Self::Category,
            "RADIO_BUTTON" => Self::RadioButton,
            "DROP_DOWN" => Self::DropDown,
            "DATE" => Self::Date,
            "TIME" => Self::Time,
            "DATETIME" => Self::DateTime,
            "CREATED_TIME" => Self::CreatedTime,
            "UPDATED_TIME" => Self::UpdatedTime,
            "USER_SELECT" => Self::UserSelect,
            "ORGANIZATION_SELECT" => Self::OrganizationSelect,
            "GROUP_SELECT" => Self::GroupSelect,
            "STATUS_ASSIGNEE" => Self::StatusAssignee,
            "CREATOR" => Self::Creator,
            "MODIFIER" => Self::Modifier,
            "RECORD_NUMBER" => Self::RecordNumber,
            "__ID__" => Self::Id,
            "__REVISION__" => Self::Revision,
            "STATUS" => Self::Status,
            "FILE" => Self::File,
            "SUBTABLE" => Self::Subtable,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The `type` string kintone uses.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SingleLineText => "SINGLE_LINE_TEXT",
            Self::MultiLineText => "MULTI_LINE_TEXT",
            Self::RichText => "RICH_TEXT",
            Self::Link => "LINK",
            Self::Number => "NUMBER",
            Self::Calc => "CALC",
            Self::CheckBox => "CHECK_BOX",
            Self::MultiSelect => "MULTI_SELECT",
            Self::Category => "CATEGORY",
            Self::RadioButton => "RADIO_BUTTON",
            Self::DropDown => "DROP_DOWN",
            Self::Date => "DATE",
            Self::Time => "TIME",
            Self::DateTime => "DATETIME",
            Self::CreatedTime => "CREATED_TIME",
            Self::UpdatedTime => "UPDATED_TIME",
            Self::UserSelect => "USER_SELECT",
            Self::OrganizationSelect => "ORGANIZATION_SELECT",
            Self::GroupSelect => "GROUP_SELECT",
            Self::StatusAssignee => "STATUS_ASSIGNEE",
            Self::Creator => "CREATOR",
            Self::Modifier => "MODIFIER",
            Self::RecordNumber => "RECORD_NUMBER",
            Self::Id => "__ID__",
            Self::Revision => "__REVISION__",
            Self::Status => "STATUS",
            Self::File => "FILE",
            Self::Subtable => "SUBTABLE",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A NUMBER value: a decimal string kept exactly as entered (`"1234.50"` stays `"1234.50"`),
/// because a float would lose trailing zeros and precision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// Accepts `-12`, `1234.50`, `.5`, `1e3`; refuses anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
            None => (unsigned, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let valid = !(int.is_empty() && frac.is_empty())
            && digits(int)
            && digits(frac)
            && exponent.is_none_or(|e| !e.is_empty() && digits(e));
        valid.then(|| Self(text.to_owned()))
    }

    /// The digits as entered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An approximation for arithmetic; the text stays the source of truth.
    pub fn to_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user, organization or group: `{"code", "name"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entity {
    /// Login name or organization/group code; what writes send.
    pub code: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
}

impl Entity {
    /// The display name, or the code when the name is blank.
    pub fn display(&self) -> &str {
        if self.name.is_empty() {
            &self.code
        } else {
            &self.name
        }
    }
}

/// One attached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Key to download it with (`GET file.json`).
    pub file_key: String,
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes (sent as a string).
    pub size: Option<u64>,
}

/// One SUBTABLE row: its id (send it back to keep the row) and its cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Row id; rows left out of a write are deleted.
    pub id: String,
    /// The row's fields by code.
    pub fields: Record,
}

/// A field value, typed by the field's `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// No value: `""`, `null`, `[]`, or an empty rich text `<div><br /></div>`.
    Empty(FieldType),
    /// `SINGLE_LINE_TEXT`
    SingleLineText(String),
    /// `MULTI_LINE_TEXT`
    MultiLineText(String),
    /// `RICH_TEXT`, HTML as stored.
    RichText(String),
    /// `LINK`
    Link(String),
    /// `NUMBER`
    Number(Decimal),
    /// `CALC`: number, date, time or text depending on the field's format, kept as sent.
    Calc(String),
    /// `CHECK_BOX`
    CheckBox(Vec<String>),
    /// `MULTI_SELECT`
    MultiSelect(Vec<String>),
    /// `CATEGORY`
    Category(Vec<String>),
    /// `RADIO_BUTTON`
    RadioButton(String),
    /// `DROP_DOWN`
    DropDown(String),
    /// `DATE`, no zone.
    Date(NaiveDate),
    /// `TIME`, no zone.
    Time(NaiveTime),
    /// `DATETIME`, UTC.
    DateTime(DateTime<Utc>),
    /// `CREATED_TIME`, UTC.
    CreatedTime(DateTime<Utc>),
    /// `UPDATED_TIME`, UTC.
    UpdatedTime(DateTime<Utc>),
    /// `USER_SELECT`
    UserSelect(Vec<Entity>),
    /// `ORGANIZATION_SELECT`
    OrganizationSelect(Vec<Entity>),
    /// `GROUP_SELECT`
    GroupSelect(Vec<Entity>),
    /// `STATUS_ASSIGNEE`
    StatusAssignee(Vec<Entity>),
    /// `CREATOR`: one object, not a list.
    Creator(Entity),
    /// `MODIFIER`: one object, not a list.
    Modifier(Entity),
    /// `RECORD_NUMBER`: `"12"` or `"APPCODE-12"`.
    RecordNumber(String),
    /// `__ID__`
    Id(u64),
    /// `__REVISION__`
    Revision(u64),
    /// `STATUS`
    Status(String),
    /// `FILE`
    File(Vec<FileInfo>),
    /// `SUBTABLE`
    Subtable(Vec<Row>),
    /// A type this crate does not know, or a value not shaped like its type's: kept raw.
    Unknown {
        /// The `type` as sent.
        field_type: String,
        /// The `value` as sent.
        value: Value,
    },
}

/// Rich text kintone stores for a field the user cleared.
const EMPTY_RICH_TEXT: [&str; 3] = ["<div><br /></div>", "<div><br></div>", "<br />"];

impl FieldValue {
    /// Types a `value` by its field's `type`; never fails (see [`FieldValue::Unknown`]).
    pub fn from_json(field_type: &str, value: &Value) -> Self {
        let kind = FieldType::parse(field_type);
        let typed = match value {
            Value::Null => Some(Self::Empty(kind.clone())),
            Value::String(s) if s.is_empty() => Some(Self::Empty(kind.clone())),
            Value::Array(items) if items.is_empty() => Some(Self::Empty(kind.clone())),
            _ => typed(&kind, value),
        };
        typed.unwrap_or_else(|| Self::Unknown {
            field_type: field_type.to_owned(),
            value: value.clone(),
        })
    }

    /// The field's type.
    pub fn field_type(&self) -> FieldType {
        use FieldType as T;
        match self {
            Self::Empty(kind) => kind.clone(),
            Self::SingleLineText(_) => T::SingleLineText,
            Self::MultiLineText(_) => T::MultiLineText,
            Self::RichText(_) => T::RichText,
            Self::Link(_) => T::Link,
            Self::Number(_) => T::Number,
            Self::Calc(_) => T::Calc,
            Self::CheckBox(_) => T::CheckBox,
            Self::MultiSelect(_) => T::MultiSelect,
            Self::Category(_) => T::Category,
            Self::RadioButton(_) => T::RadioButton,
            Self::DropDown(_) => T::DropDown,
            Self::Date(_) => T::Date,
            Self::Time(_) => T::Time,
            Self::DateTime(_) => T::DateTime,
            Self::CreatedTime(_) => T::CreatedTime,
            Self::UpdatedTime(_) => T::UpdatedTime,
            Self::UserSelect(_) => T::UserSelect,
            Self::OrganizationSelect(_) => T::OrganizationSelect,
            Self::GroupSelect(_) => T::GroupSelect,
            Self::StatusAssignee(_) => T::StatusAssignee,
            Self::Creator(_) => T::Creator,
            Self::Modifier(_) => T::Modifier,
            Self::RecordNumber(_) => T::RecordNumber,
            Self::Id(_) => T::Id,
            Self::Revision(_) => T::Revision,
            Self::Status(_) => T::Status,
            Self::File(_) => T::File,
            Self::Subtable(_) => T::Subtable,
            Self::Unknown { field_type, .. } => FieldType::parse(field_type),
        }
    }

    /// Whether the field holds no value.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty(_))
    }

    /// The value as a person expects to read it, with times shown in `zone`; `None` when empty,
    /// so callers can treat it as missing.
    ///
    /// DATE and TIME as given (`2026-12-24`, `14:05`); DATETIME and the record times in `zone`
    /// (`2026-12-24 10:00`); NUMBER with its digits as entered; users, organizations, groups by
    /// name and list values joined with `、`; rich text without its markup; files by name;
    /// table rows one per line.
    pub fn render<Z: TimeZone>(&self, zone: &Z) -> Option<String>
    where
        Z::Offset: fmt::Display,
    {
        let text = match self {
            Self::Empty(_) => return None,
            Self::SingleLineText(s)
            | Self::MultiLineText(s)
            | Self::Link(s)
            | Self::RadioButton(s)
            | Self::DropDown(s)
            | Self::RecordNumber(s)
            | Self::Status(s) => s.clone(),
            Self::RichText(html) => html_to_text(html),
            Self::Number(n) => n.as_str().to_owned(),
            // A CALC in a date-time format carries UTC like DATETIME; show it the same way.
            Self::Calc(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(at) => local_minutes(&at.with_timezone(&Utc), zone),
                Err(_) => s.clone(),
            },
            Self::CheckBox(items) | Self::MultiSelect(items) | Self::Category(items) => {
                items.join(LIST_SEPARATOR)
            }
            Self::Date(d) => d.format("%Y-%m-%d").to_string(),
            Self::Time(t) => t.format("%H:%M").to_string(),
            Self::DateTime(at) | Self::CreatedTime(at) | Self::UpdatedTime(at) => {
                local_minutes(at, zone)
            }
            Self::UserSelect(list)
            | Self::OrganizationSelect(list)
            | Self::GroupSelect(list)
            | Self::StatusAssignee(list) => list
                .iter()
                .map(Entity::display)
                .collect::<Vec<_>>()
                .join(LIST_SEPARATOR),
            Self::Creator(who) | Self::Modifier(who) => who.display().to_owned(),
            Self::Id(n) | Self::Revision(n) => n.to_string(),
            Self::File(files) => files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(LIST_SEPARATOR),
            Self::Subtable(rows) => rows
                .iter()
                .filter_map(|row| {
                    let cells: Vec<String> = row
                        .fields
                        .iter()
                        .filter_map(|(_, value)| value.render(zone))
                        .collect();
                    (!cells.is_empty()).then(|| cells.join(LIST_SEPARATOR))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Self::Unknown { value, .. } => match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            },
        };
        (!text.trim().is_empty()).then_some(text)
    }
}

fn local_minutes<Z: TimeZone>(at: &DateTime<Utc>, zone: &Z) -> String
where
    Z::Offset: fmt::Display,
{
    at.with_timezone(zone).format("%Y-%m-%d %H:%M").to_string()
}

/// The typed value for a non-empty `value`, or `None` if it does not have the type's shape.
fn typed(kind: &FieldType, value: &Value) -> Option<FieldValue> {
    use FieldType as T;
    use FieldValue as V;
    let text = || value.as_str().map(str::to_owned);
    Some(match kind {
        T::SingleLineText => V::SingleLineText(text()?),
        T::MultiLineText => V::MultiLineText(text()?),
        T::RichText if EMPTY_RICH_TEXT.contains(&value.as_str()?) => V::Empty(T::RichText),
        T::RichText => V::RichText(text()?),
        T::Link => V::Link(text()?),
        T::Number => V::Number(Decimal::parse(value.as_str()?)?),
        T::Calc => V::Calc(text()?),
        T::CheckBox => V::CheckBox(strings(value)?),
        T::MultiSelect => V::MultiSelect(strings(value)?),
        T::Category => V::Category(strings(value)?),
        T::RadioButton => V::RadioButton(text()?),
        T::DropDown => V::DropDown(text()?),
        T::Date => V::Date(NaiveDate::parse_from_str(value.as_str()?, "%Y-%m-%d").ok()?),
        T::Time => V::Time(time(value.as_str()?)?),
        T::DateTime => V::DateTime(utc(value.as_str()?)?),
        T::CreatedTime => V::CreatedTime(utc(value.as_str()?)?),
        T::UpdatedTime => V::UpdatedTime(utc(value.as_str()?)?),
        T::UserSelect => V::UserSelect(entities(value)?),
        T::OrganizationSelect => V::OrganizationSelect(entities(value)?),
        T::GroupSelect => V::GroupSelect(entities(value)?),
        T::StatusAssignee => V::StatusAssignee(entities(value)?),
        T::Creator => entity(value)?.map_or(V::Empty(T::Creator), V::Creator),
        T::Modifier => entity(value)?.map_or(V::Empty(T::Modifier), V::Modifier),
        T::RecordNumber => V::RecordNumber(number_text(value)?),
        T::Id => V::Id(number_text(value)?.parse().ok()?),
        T::Revision => V::Revision(number_text(value)?.parse().ok()?),
        T::Status => V::Status(text()?),
        T::File => V::File(files(value)?),
        T::Subtable => V::Subtable(rows(value)?),
        T::Other(_) => return None,
    })
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// A string, or a number sent where kintone usually sends a string (ids, sizes, revisions).
pub(crate) fn number_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn entity(value: &Value) -> Option<Option<Entity>> {
    let who = Entity::deserialize(value).ok()?;
    Some((!who.code.is_empty()).then_some(who))
}

fn entities(value: &Value) -> Option<Vec<Entity>> {
    Vec::<Entity>::deserialize(value).ok()
}

fn time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .ok()
}

/// An RFC 3339 instant in UTC; kintone sends `Z`, writes may carry an offset.
pub(crate) fn utc(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn files(value: &Value) -> Option<Vec<FileInfo>> {
    value
        .as_array()?
        .iter()
        .map(|file| {
            let field = |key: &str| file.get(key).and_then(Value::as_str).map(str::to_owned);
            Some(FileInfo {
                file_key: field("fileKey")?,
                name: field("name").unwrap_or_default(),
                content_type: field("contentType").unwrap_or_default(),
                size: file
                    .get("size")
                    .and_then(number_text)
                    .and_then(|s| s.parse().ok()),
            })
        })
        .collect()
}

fn rows(value: &Value) -> Option<Vec<Row>> {
    value
        .as_array()?
        .iter()
        .map(|row| {
            Some(Row {
                id: row.get("id").and_then(number_text).unwrap_or_default(),
                fields: Record::from_json(row.get("value")?).ok()?,
            })
        })
        .collect()
}

/// Rich text as plain text: line breaks for block ends, tags dropped, common entities decoded.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = &rest[start..];
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        let name = tag.trim_start_matches('/').split([' ', '/']).next();
        let breaks = matches!(name, Some("br"))
            || (tag.starts_with('/') && matches!(name, Some("div" | "p" | "li")));
        if breaks && !out.ends_with('\n') {
            out.push('\n');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.trim_end_matches('\n').to_owned()
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record is not a JSON object.
    #[error("a record must be a JSON object of fields")]
    NotAnObject,
    /// A field is not an object with a string `type`.
    #[error("field {code:?} has no string \"type\"")]
    UntypedField {
        /// The field code.
        code: String,
    },
}

/// A record's fields by field code; key order carries no meaning in kintone, so codes are sorted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    fields: BTreeMap<String, FieldValue>,
}

impl Record {
    /// Reads a record object (`{"code": {"type", "value"}, …}`).
    pub fn from_json(value: &Value) -> Result<Self, RecordError> {
        let object = value.as_object().ok_or(RecordError::NotAnObject)?;
        let mut fields = BTreeMap::new();
        for (code, field) in object {
            let kind = field
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| RecordError::UntypedField { code: code.clone() })?;
            let value = field.get("value").unwrap_or(&Value::Null);
            fields.insert(code.clone(), FieldValue::from_json(kind, value));
        }
        Ok(Self { fields })
    }

    /// The field with this code.
    pub fn get(&self, code: &str) -> Option<&FieldValue> {
        self.fields.get(code)
    }

    /// All fields, by code.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.fields
            .iter()
            .map(|(code, value)| (code.as_str(), value))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The first field of a type, with its code; for fields whose code is a display name that
    /// changes with the language (STATUS, STATUS_ASSIGNEE, CATEGORY) or that an admin renamed.
    pub fn find_by_type(&self, kind: &FieldType) -> Option<(&str, &FieldValue)> {
        self.iter().find(|(_, value)| value.field_type() == *kind)
    }

    /// The record id (`$id`), found by type so a renamed or odd key still works.
    pub fn id(&self) -> Option<u64> {
        match self.get("$id") {
            Some(FieldValue::Id(id)) => Some(*id),
            _ => match self.find_by_type(&FieldType::Id)? {
                (_, FieldValue::Id(id)) => Some(*id),
                _ => None,
            },
        }
    }

    /// The record revision (`$revision`).
    pub fn revision(&self) -> Option<u64> {
        match self.get("$revision") {
            Some(FieldValue::Revision(revision)) => Some(*revision),
            _ => match self.find_by_type(&FieldType::Revision)? {
                (_, FieldValue::Revision(revision)) => Some(*revision),
                _ => None,
            },
        }
    }

    /// The STATUS field's code and value; `None` when process management is off.
    pub fn status_field(&self) -> Option<(&str, &FieldValue)> {
        self.find_by_type(&FieldType::Status)
    }

    /// The process-management status (`"SMS送信"`), found by type, never by key.
    pub fn status(&self) -> Option<&str> {
        match self.status_field()? {
            (_, FieldValue::Status(status)) => Some(status),
            _ => None,
        }
    }

    /// A field rendered as text (see [`FieldValue::render`]); `None` if absent or empty.
    pub fn render<Z: TimeZone>(&self, code: &str, zone: &Z) -> Option<String>
    where
        Z::Offset: fmt::Display,
    {
        self.get(code)?.render(zone)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use chrono_tz::Asia::Tokyo;
    use serde_json::json;

    use super::*;
    use crate::test_support::fixture;

    fn every_field_type() -> Record {
        #[derive(Deserialize)]
        struct Reply {
            record: Record,
        }
        let reply: Reply =
            serde_json::from_slice(&fixture("record_every_field_type.json")).unwrap();
        reply.record
    }

    fn rendered(record: &Record, code: &str) -> Option<String> {
        record.render(code, &Tokyo)
    }

    #[test]
    fn every_field_type_parses_to_its_typed_variant() {
        let record = every_field_type();
        for (code, kind) in [
            ("備考", FieldType::MultiLineText),
            ("詳細", FieldType::RichText),
            ("電話", FieldType::Link),
            ("税込", FieldType::Calc),
            ("タグ", FieldType::MultiSelect),
            ("カテゴリー", FieldType::Category),
            ("性別", FieldType::RadioButton),
            ("作成日時", FieldType::CreatedTime),
            ("部署", FieldType::OrganizationSelect),
            ("グループ", FieldType::GroupSelect),
            ("作業者", FieldType::StatusAssignee),
            ("更新者", FieldType::Modifier),
            ("顧客No", FieldType::RecordNumber),
        ] {
            let value = record.get(code).unwrap();
            assert_eq!(value.field_type(), kind, "{code}");
            assert!(!value.is_empty(), "{code}");
            assert!(!matches!(value, FieldValue::Unknown { .. }), "{code}");
        }
        assert_eq!(record.id(), Some(7));
        assert_eq!(record.revision(), Some(3));
        assert_eq!(record.status(), Some("SMS送信"));
        assert_eq!(
            record.get("添付ファイル"),
            Some(&FieldValue::File(vec![FileInfo {
                file_key: "201612240107331A1DC2F8D04C3D9E0A1B2C3D4E5F60718".into(),
                name: "見積書.pdf".into(),
                content_type: "application/pdf".into(),
                size: Some(23175),
            }]))
        );
    }

    #[test]
    fn empty_values_of_every_shape_are_the_empty_state() {
        let record = every_field_type();
        for (code, kind) in [
            ("メモ", FieldType::SingleLineText),
            ("空の数値", FieldType::Number),
            ("空の日時", FieldType::DateTime),
            ("空の日付", FieldType::Date),
            ("空の時刻", FieldType::Time),
            ("空のチェック", FieldType::CheckBox),
            ("空のラジオ", FieldType::RadioButton),
            ("空のドロップダウン", FieldType::DropDown),
            ("空のリッチテキスト", FieldType::RichText),
            ("空のユーザー", FieldType::UserSelect),
            ("空のファイル", FieldType::File),
            ("空のテーブル", FieldType::Subtable),
        ] {
            assert_eq!(record.get(code), Some(&FieldValue::Empty(kind)), "{code}");
            assert_eq!(rendered(&record, code), None, "{code}");
        }
    }

    #[test]
    fn each_field_type_renders_as_a_person_reads_it() {
        let record = every_field_type();
        for (code, text) in [
            ("氏名", "山田 太郎"),
            ("備考", "1行目\n2行目"),
            ("詳細", "ご来店ありがとうございます"),
            ("電話", "090-1234-5678"),
            ("金額", "1234.50"),
            ("税込", "1357.95"),
            ("対応", "電話、SMS"),
            ("タグ", "新規、VIP"),
            ("カテゴリー", "東京"),
            ("性別", "女性"),
            ("SMS状態", "送信待ち"),
            ("予約日", "2026-12-24"),
            ("予約時刻", "14:05"),
            ("来店日時", "2026-12-24 10:00"),
            ("作成日時", "2026-12-21 08:30"),
            ("更新日時", "2026-12-24 10:00"),
            ("担当者", "佐藤 花子、鈴木 一郎"),
            ("部署", "営業部"),
            ("グループ", "Everyone"),
            ("作業者", "佐藤 花子"),
            ("作成者", "佐藤 花子"),
            ("更新者", "鈴木 一郎"),
            ("顧客No", "CRM-7"),
            ("$id", "7"),
            ("$revision", "3"),
            ("ステータス", "SMS送信"),
            ("添付ファイル", "見積書.pdf"),
        ] {
            assert_eq!(rendered(&record, code).as_deref(), Some(text), "{code}");
        }
    }

    #[test]
    fn a_utc_datetime_renders_in_the_given_zone() {
        let value = FieldValue::from_json("DATETIME", &json!("2026-12-24T01:00:00Z"));
        assert_eq!(value.render(&Tokyo).as_deref(), Some("2026-12-24 10:00"));
        assert_eq!(value.render(&Utc).as_deref(), Some("2026-12-24 01:00"));
    }

    #[test]
    fn a_number_keeps_its_digits_as_entered() {
        let value = FieldValue::from_json("NUMBER", &json!("1234.50"));
        assert_eq!(value, FieldValue::Number(Decimal("1234.50".into())));
        assert_eq!(value.render(&Tokyo).as_deref(), Some("1234.50"));
        for ok in ["-12", "0.001", ".5", "1e3", "+7", "1.5E-3"] {
            assert!(Decimal::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "-", ".", "1,234", "12a", "1e", "NaN"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_subtable_keeps_row_ids_and_typed_cells() {
        let record = every_field_type();
        let Some(FieldValue::Subtable(rows)) = record.get("明細") else {
            panic!("明細 is not a table: {:?}", record.get("明細"));
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].id.as_str(), rows[1].id.as_str()),
            ("48277", "48278")
        );
        assert_eq!(
            rows[0].fields.get("数量"),
            Some(&FieldValue::Number(Decimal("1".into())))
        );
        assert_eq!(
            rows[1].fields.get("数量"),
            Some(&FieldValue::Empty(FieldType::Number))
        );
        assert_eq!(
            rendered(&record, "明細").as_deref(),
            Some("カット、佐藤 花子、1\nカラー")
        );
    }

    #[test]
    fn unknown_types_and_misshapen_values_are_kept_raw() {
        let record = every_field_type();
        let Some(FieldValue::Unknown { field_type, value }) = record.get("位置") else {
            panic!("{:?}", record.get("位置"));
        };
        assert_eq!(field_type, "GEOLOCATION_FUTURE");
        assert_eq!(value["lat"], json!(35.68));
        assert_eq!(rendered(&record, "位置"), None);

        let odd = FieldValue::from_json("NUMBER", &json!("12円"));
        assert_eq!(odd.field_type(), FieldType::Number);
        assert!(matches!(odd, FieldValue::Unknown { .. }));
        assert_eq!(odd.render(&Tokyo).as_deref(), Some("12円"));
        assert!(matches!(
            FieldValue::from_json("DATE", &json!(20261224)),
            FieldValue::Unknown { .. }
        ));
    }

    #[test]
    fn a_field_without_a_type_is_a_precise_error() {
        let error = Record::from_json(&json!({"氏名": {"value": "x"}})).unwrap_err();
        assert_eq!(
            error,
            RecordError::UntypedField {
                code: "氏名".into()
            }
        );
        assert_eq!(
            Record::from_json(&json!([])).unwrap_err(),
            RecordError::NotAnObject
        );
    }

    #[test]
    fn type_names_round_trip() {
        for name in [
            "SINGLE_LINE_TEXT",
            "__ID__",
            "STATUS_ASSIGNEE",
            "SUBTABLE",
            "NEW_TYPE",
        ] {
            assert_eq!(FieldType::parse(name).as_str(), name);
        }
    }
}
