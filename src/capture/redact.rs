//! Redaction of captured payloads: phone numbers become placeholders of the same shape (stable
//! within a file, so a number that appears twice is still one number), names and e-mail
//! addresses `REDACTED`, tokens and session ids `REDACTED`. Field names, ids, types and the
//! structure are kept, so the file still parses and replays as the CRM's own payload would.

use std::{borrow::Cow, collections::HashMap};

use quick_xml::events::{BytesText, Event};
use serde_json::Value;

use crate::domain::phone::PhoneNumber;

/// What a redacted value becomes.
pub const REDACTED: &str = "REDACTED";
/// What an e-mail address becomes.
const REDACTED_EMAIL: &str = "redacted@example.com";
/// Fewest and most digits of a phone number (E.164 allows 15; national forms have 10 or more).
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 10..=15;

/// Why a body could not be redacted; it is then not written at all.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Not well-formed XML.
    #[error("not XML: {0}")]
    Xml(String),
    /// Not a form body.
    #[error("not a form body: {0}")]
    Form(String),
}

/// What a field's name says about its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// A person's name: every text in it is redacted.
    Name,
    /// A secret: a token, a session id, a password.
    Secret,
}

/// One file's redaction: numbers are replaced by the same placeholder wherever they appear.
pub struct Redactor<'a> {
    extra: &'a [String],
    /// Each number's place in the file, by its E.164 form.
    numbers: HashMap<String, usize>,
}

impl<'a> Redactor<'a> {
    /// A redactor that also treats the fields named in `extra` (`redact_fields`) as names.
    pub fn new(extra: &'a [String]) -> Self {
        Self {
            extra,
            numbers: HashMap::new(),
        }
    }

    /// What a field of this name holds, when its value must go.
    fn field(&self, name: &str) -> Option<Field> {
        if self.extra.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            return Some(Field::Name);
        }
        let plain: String = name
            .trim_end_matches("__c")
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' ' | '$'))
            .flat_map(char::to_lowercase)
            .collect();
        const SECRETS: [&str; 11] = [
            "sessionid",
            "token",
            "accesstoken",
            "apitoken",
            "inboundtoken",
            "refreshtoken",
            "authtoken",
            "password",
            "secret",
            "clientsecret",
            "authorization",
        ];
        const NAMES: [&str; 9] = [
            "名前",
            "お名前",
            "姓",
            "フリガナ",
            "ふりがな",
            "kana",
            "furigana",
            "recordtitle",
            "salutation",
        ];
        if SECRETS.contains(&plain.as_str()) {
            Some(Field::Secret)
        } else if plain.ends_with("name")
            || plain.ends_with('名')
            || NAMES.contains(&plain.as_str())
        {
            Some(Field::Name)
        } else {
            None
        }
    }

    /// `text` with every phone number replaced by its placeholder and every e-mail address by
    /// `redacted@example.com`.
    pub fn text<'t>(&mut self, text: &'t str) -> Cow<'t, str> {
        match self.numbers_in(text) {
            Cow::Borrowed(t) => emails_in(t),
            Cow::Owned(t) => Cow::Owned(emails_in(&t).into_owned()),
        }
    }

    /// The value a field named `field` keeps: a name or a secret is `REDACTED` whole.
    fn value<'t>(&mut self, field: Option<Field>, text: &'t str) -> Cow<'t, str> {
        match field {
            Some(_) if !text.is_empty() => Cow::Borrowed(REDACTED),
            _ => self.text(text),
        }
    }

    /// `text` with its phone numbers replaced.
    fn numbers_in<'t>(&mut self, text: &'t str) -> Cow<'t, str> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut out = String::new();
        let mut copied = 0;
        let mut i = 0;
        while i < chars.len() {
            let (start, c) = chars[i];
            let boundary = i == 0 || !chars[i - 1].1.is_alphanumeric();
            if !(boundary && starts_number(c)) {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < chars.len() && in_number(chars[j].1) {
                j += 1;
            }
            // A run ends on a digit or `)`, never on a separator it does not own.
            while j > i && !(digit(chars[j - 1].1).is_some() || chars[j - 1].1 == ')') {
                j -= 1;
            }
            let end = chars.get(j).map_or(text.len(), |(at, _)| *at);
            let next_ok = chars.get(j).is_none_or(|(_, c)| !c.is_alphanumeric());
            let run = &text[start..end];
            if next_ok && is_phone(run) {
                out.push_str(&text[copied..start]);
                let placeholder = self.placeholder(run);
                out.push_str(&placeholder);
                copied = end;
                i = j.max(i + 1);
            } else {
                i = j.max(i + 1);
            }
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// The placeholder of the number `run`: its leading digits (calling code, mobile prefix)
    /// kept, the last eight `1000` and the number's place in the file (one number written two
    /// ways is one place), every other character and the digits' width as they were.
    fn placeholder(&mut self, run: &str) -> String {
        let digits: String = run.chars().filter_map(digit).collect();
        let key = PhoneNumber::parse(run).map_or_else(|_| digits.clone(), |n| n.e164().to_string());
        let next = self.numbers.len() + 1;
        let place = *self.numbers.entry(key).or_insert(next);
        let keep = digits.len() - 8;
        let replacement = format!("{}1000{:04}", &digits[..keep], place % 10_000);
        let mut new = replacement.chars();
        run.chars()
            .map(|c| match digit(c) {
                Some(_) => {
                    let d = new.next().unwrap_or('0');
                    if c.is_ascii_digit() {
                        d
                    } else {
                        // Full-width in, full-width out.
                        char::from_u32('０' as u32 + d.to_digit(10).unwrap_or(0)).unwrap_or(d)
                    }
                }
                _ => c,
            })
            .collect()
    }

    /// A JSON body, redacted; pretty-printed, so a committed fixture reads well.
    pub fn json(&mut self, body: &[u8]) -> Result<Vec<u8>, RedactError> {
        let mut value: Value = serde_json::from_slice(body)?;
        self.json_value(&mut value, None);
        Ok(serde_json::to_vec_pretty(&value)?)
    }

    fn json_value(&mut self, value: &mut Value, field: Option<Field>) {
        match value {
            Value::String(s) => {
                let new = self.value(field, s).into_owned();
                *s = new;
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json_value(v, field)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    // A kintone field's `type` says how to read its value: kept.
                    if key == "type" {
                        continue;
                    }
                    let inner = self.field(key).or(field).or_else(|| user_field(v));
                    self.json_value(v, inner);
                }
            }
            _ => {}
        }
    }

    /// A form body (Twilio's), redacted, its parameters in their order.
    pub fn form(&mut self, body: &[u8]) -> Result<Vec<u8>, RedactError> {
        let params: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| RedactError::Form(e.to_string()))?;
        let params: Vec<(String, String)> = params
            .into_iter()
            .map(|(name, value)| {
                let field = self.field(&name);
                let value = self.value(field, &value).into_owned();
                (name, value)
            })
            .collect();
        serde_urlencoded::to_string(params)
            .map(String::into_bytes)
            .map_err(|e| RedactError::Form(e.to_string()))
    }

    /// An XML body (a SOAP envelope), redacted: elements by their local name, every other
    /// byte as it came.
    pub fn xml(&mut self, body: &[u8]) -> Result<Vec<u8>, RedactError> {
        let xml = |e: &dyn std::fmt::Display| RedactError::Xml(e.to_string());
        let mut reader = quick_xml::Reader::from_reader(body);
        let mut writer = quick_xml::Writer::new(Vec::with_capacity(body.len()));
        // Per open element: what it holds, and whether its `REDACTED` is written already (a
        // text is cut at each entity reference, `Sato &amp; Co.`, and must go whole).
        let mut open: Vec<(Option<Field>, bool)> = Vec::new();
        let mut buf = Vec::new();
        loop {
            let event = reader.read_event_into(&mut buf).map_err(|e| xml(&e))?;
            let field = open.last().and_then(|(field, _)| *field);
            let content = matches!(
                event,
                Event::Text(_) | Event::GeneralRef(_) | Event::CData(_)
            );
            match event {
                Event::Eof => break,
                Event::Start(ref start) => {
                    let name = start.local_name();
                    let name = String::from_utf8_lossy(name.as_ref());
                    open.push((self.field(&name).or(field), false));
                    writer.write_event(event.borrow()).map_err(|e| xml(&e))?;
                }
                Event::End(_) => {
                    open.pop();
                    writer.write_event(event.borrow()).map_err(|e| xml(&e))?;
                }
                _ if content && field.is_some() => {
                    let blank = match &event {
                        Event::Text(text) => text.decode().map_err(|e| xml(&e))?.trim().is_empty(),
                        _ => false,
                    };
                    let written = open.last_mut().map(|(_, written)| written);
                    match (blank, written) {
                        (false, Some(written)) if !*written => {
                            *written = true;
                            writer
                                .write_event(Event::Text(BytesText::new(REDACTED)))
                                .map_err(|e| xml(&e))?;
                        }
                        (true, _) => writer.write_event(event.borrow()).map_err(|e| xml(&e))?,
                        _ => {}
                    }
                }
                Event::Text(ref text) => {
                    let raw = text.decode().map_err(|e| xml(&e))?;
                    let unescaped = quick_xml::escape::unescape(&raw).map_err(|e| xml(&e))?;
                    match self.text(&unescaped) {
                        Cow::Borrowed(_) => {
                            writer.write_event(event.borrow()).map_err(|e| xml(&e))?
                        }
                        Cow::Owned(new) => writer
                            .write_event(Event::Text(BytesText::new(&new)))
                            .map_err(|e| xml(&e))?,
                    }
                }
                other => writer.write_event(other).map_err(|e| xml(&e))?,
            }
            buf.clear();
        }
        Ok(writer.into_inner())
    }
}

/// kintone's user, organisation and group fields (`CREATOR`, `USER_SELECT`…) hold people: their
/// codes and names go whatever the field is called.
fn user_field(value: &Value) -> Option<Field> {
    const PEOPLE: [&str; 6] = [
        "CREATOR",
        "MODIFIER",
        "USER_SELECT",
        "STATUS_ASSIGNEE",
        "ORGANIZATION_SELECT",
        "GROUP_SELECT",
    ];
    let kind = value.get("type")?.as_str()?;
    PEOPLE.contains(&kind).then_some(Field::Name)
}

/// A digit, ASCII or full-width, as ASCII.
fn digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
        _ => None,
    }
}

/// Where a written number may start: a `+`, a trunk `0` or an area code in brackets. Dates,
/// amounts and ids start otherwise.
fn starts_number(c: char) -> bool {
    matches!(c, '+' | '＋' | '(' | '（' | '0' | '０')
}

/// What a written number is made of.
fn in_number(c: char) -> bool {
    digit(c).is_some()
        || matches!(
            c,
            '+' | '＋' | '(' | ')' | '（' | '）' | '-' | ' ' | '−' | '－' | '‐' | 'ー' | '　'
        )
}

/// Whether a run of number characters is a phone number: 10 to 15 digits, starting as one.
fn is_phone(run: &str) -> bool {
    let digits = run.chars().filter_map(digit).count();
    let first_digit = run.chars().find_map(digit);
    PHONE_DIGITS.contains(&digits) && (run.starts_with(['+', '＋']) || first_digit == Some('0'))
}

/// `text` with its e-mail addresses replaced.
fn emails_in(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| local(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = at
            + 1
            + rest[at + 1..]
                .char_indices()
                .find(|(_, c)| !domain(*c))
                .map_or(rest.len() - at - 1, |(i, _)| i);
        let host = rest[at + 1..end].trim_end_matches('.');
        if start < at && host.contains('.') {
            out.push_str(&rest[..start]);
            out.push_str(REDACTED_EMAIL);
            rest = &rest[at + 1 + host.len()..];
        } else {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::phone::NumberKind;

    fn fixture(path: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Whether `text` still holds any of `originals` (or a number's last eight digits).
    fn leaked<'a>(text: &str, originals: &[&'a str]) -> Vec<&'a str> {
        let digits: String = text.chars().filter_map(digit).collect();
        originals
            .iter()
            .copied()
            .filter(|o| {
                let tail: String = o.chars().filter_map(digit).collect();
                let tail = &tail[tail.len().saturating_sub(8)..];
                text.contains(o) || (tail.len() == 8 && digits.contains(tail))
            })
            .collect()
    }

    #[test]
    fn an_outbound_message_keeps_its_shape_without_numbers_names_or_addresses() {
        let original = fixture("salesforce/outbound_message_contact.xml");
        let redacted = Redactor::new(&[]).xml(&original).unwrap();
        let text = String::from_utf8(redacted.clone()).unwrap();
        let personal = [
            "090-1234-5678",
            "(031) 234-5678",
            "０８０−１１１１−２２２２",
            "花子",
            "山田",
            "Sato",
            "一郎",
            "鈴木",
            "hanako.yamada@example.jp",
            "t.sato@example.jp",
        ];
        assert_eq!(leaked(&text, &personal), Vec::<&str>::new(), "{text}");
        let before = tsunagi_salesforce::outbound::parse(&original).unwrap();
        let after = tsunagi_salesforce::outbound::parse(&redacted).unwrap();
        assert_eq!(after.organization_id, before.organization_id);
        let ids = |m: &tsunagi_salesforce::outbound::OutboundMessage| -> Vec<String> {
            m.notifications
                .iter()
                .map(|n| n.sobject.id.to_string())
                .collect()
        };
        assert_eq!(ids(&after), ids(&before));
        let first = &after.notifications[0].sobject.fields;
        assert_eq!(first["LastName"].as_deref(), Some(REDACTED));
        assert_eq!(first["Appointment_Date__c"].as_deref(), Some("2026-12-24"));
        assert_eq!(first["MobilePhone"].as_deref(), Some("090-1000-0001"));
        assert_eq!(
            after.notifications[2].sobject.fields["MobilePhone"].as_deref(),
            Some("０８０−１０００−０００３"),
            "full-width stays full-width"
        );
        assert_eq!(
            after.notifications[1].sobject.fields["LastName"].as_deref(),
            Some(REDACTED),
            "a name cut by an entity reference goes whole"
        );
    }

    #[test]
    fn a_session_id_goes_and_a_number_written_two_ways_stays_one_number() {
        let original = fixture("salesforce/outbound_message_session_id.xml");
        let redacted = Redactor::new(&[]).xml(&original).unwrap();
        let text = String::from_utf8(redacted.clone()).unwrap();
        let personal = [
            "FakeSessionId",
            "03-5555-0123",
            "090-8765-4321",
            "+81 90-8765-4321",
            "美咲",
            "高橋",
        ];
        assert_eq!(leaked(&text, &personal), Vec::<&str>::new(), "{text}");
        assert!(text.contains("<SessionId>REDACTED</SessionId>"), "{text}");
        let message = tsunagi_salesforce::outbound::parse(&redacted).unwrap();
        let fields = &message.notifications[0].sobject.fields;
        assert_eq!(
            fields["Description"].as_deref(),
            Some("折り返しは 03-1000-0001 または 090-1000-0002 まで")
        );
        assert_eq!(fields["MobilePhone"].as_deref(), Some("+81 90-1000-0002"));
    }

    #[test]
    fn placeholders_are_mobile_numbers_that_still_send() {
        let mut r = Redactor::new(&[]);
        for (input, kind) in [
            ("090-1234-5678", NumberKind::Mobile),
            ("+81 80-9876-5432", NumberKind::Mobile),
            ("+819012345678", NumberKind::Mobile),
        ] {
            let placeholder = r.text(input).into_owned();
            assert_ne!(placeholder, input);
            let number = PhoneNumber::parse(&placeholder).unwrap();
            assert_eq!(number.kind(), kind, "{placeholder}");
        }
    }

    #[test]
    fn a_session_id_and_a_token_go_and_a_number_keeps_one_placeholder_per_file() {
        let xml = br#"<n><SessionId>00D5j!AQcAQH0dMHZfz972Szmpkb</SessionId><Phone>090-1234-5678</Phone><Other>090-1234-5678</Other><Fax>03-1234-0000 ext</Fax></n>"#;
        let text = String::from_utf8(Redactor::new(&[]).xml(xml).unwrap()).unwrap();
        assert_eq!(
            text,
            "<n><SessionId>REDACTED</SessionId><Phone>090-1000-0001</Phone><Other>090-1000-0001</Other><Fax>03-1000-0002 ext</Fax></n>"
        );
    }

    #[test]
    fn a_kintone_webhook_keeps_its_field_codes_types_and_ids() {
        let original = fixture("kintone/webhook_add_record.json");
        let redacted = Redactor::new(&[]).json(&original).unwrap();
        let text = String::from_utf8(redacted.clone()).unwrap();
        let personal = [
            "090-1234-5678",
            "山田 太郎",
            "山田",
            "太郎",
            "佐藤 花子",
            "sato",
        ];
        assert_eq!(leaked(&text, &personal), Vec::<&str>::new(), "{text}");
        let webhook = tsunagi_kintone::webhook::parse(&redacted).unwrap();
        assert_eq!(webhook.type_name(), "ADD_RECORD");
        assert_eq!(webhook.record_id(), Some(7));
        let value: Value = serde_json::from_slice(&redacted).unwrap();
        assert_eq!(value["record"]["氏名"]["type"], "SINGLE_LINE_TEXT");
        assert_eq!(value["record"]["氏名"]["value"], REDACTED);
        assert_eq!(value["record"]["電話番号"]["value"], "090-1000-0001");
        assert_eq!(value["record"]["予約日"]["value"], "2026-12-24");
        assert_eq!(value["record"]["作成者"]["value"]["code"], REDACTED);
    }

    #[test]
    fn a_flow_call_keeps_its_records_and_templates() {
        let original = fixture("salesforce/flow_request_contacts.json");
        let redacted = Redactor::new(&["Interests__c".to_string()])
            .json(&original)
            .unwrap();
        let text = String::from_utf8(redacted.clone()).unwrap();
        let personal = [
            "090-1234-5678",
            "(031) 234-5678",
            "山田",
            "花子",
            "Sato",
            "鈴木",
            "Dental",
        ];
        assert_eq!(leaked(&text, &personal), Vec::<&str>::new(), "{text}");
        let value: Value = serde_json::from_slice(&redacted).unwrap();
        assert_eq!(value["records"][0]["id"], "0035j00000Pq7RsAAJ");
        assert_eq!(value["records"][0]["phone"], "090-1000-0001");
        assert_eq!(value["records"][0]["fields"]["Visit_Count__c"], 3);
        assert_eq!(
            value["records"][1]["template"],
            "{{LastName}}様 明日{{Appointment_Date__c}}のご予約です"
        );
        assert_eq!(
            value["records"][1]["fields"]["Appointment_Time__c"],
            "2026-12-25T01:30:00.000+0000"
        );
        assert_eq!(
            value["records"][2]["fields"]["Interests__c"], REDACTED,
            "redact_fields"
        );
    }

    #[test]
    fn a_twilio_form_keeps_its_parameters_in_order() {
        let original = fixture("twilio/inbound_sms_japanese.form");
        let redacted = Redactor::new(&[]).form(&original).unwrap();
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&redacted).unwrap();
        let before: Vec<(String, String)> = serde_urlencoded::from_bytes(&original).unwrap();
        let names =
            |p: &[(String, String)]| -> Vec<String> { p.iter().map(|(n, _)| n.clone()).collect() };
        assert_eq!(names(&params), names(&before));
        let get = |name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.clone();
        // `To` comes first in the form, so it is the file's first number.
        assert_eq!(get("To"), "+815010000001");
        assert_eq!(get("From"), "+819010000002");
        assert_eq!(get("Body"), "はい、明日の10時で大丈夫です。");
        assert_eq!(get("MessageSid"), "SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d");
        let text = String::from_utf8(redacted).unwrap();
        assert_eq!(
            leaked(&text, &["+819012345678", "+815055550100"]),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn numbers_in_free_text_go_but_dates_ids_and_amounts_stay() {
        let mut r = Redactor::new(&[]);
        assert_eq!(
            r.text("折り返しは 090-1234-5678 まで (mail: a.b@example.co.jp)"),
            "折り返しは 090-1000-0001 まで (mail: redacted@example.com)"
        );
        for kept in [
            "2026-12-24 10:00",
            "SM0123456789abcdef0123",
            "1764410000000",
            "0035j00000Pq7RsAAJ",
            "合計 12,345,678円",
            "user@localhost",
        ] {
            assert_eq!(r.text(kept), kept);
        }
    }
}
