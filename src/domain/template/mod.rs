//! SMS templates: merge fields, simple conditions and three filters, rendered by minijinja.
//!
//! A template comes from an API caller, so it must stay data, not a program: [`Template::compile`]
//! refuses anything outside a whitelist (loops, assignments, arithmetic, concatenation…) on the
//! syntax tree before rendering, and [`Template::render`] still runs on fuel into a capped buffer,
//! so no template can keep a worker busy or fill memory.

mod filters;
mod whitelist;

use std::{
    collections::BTreeMap,
    io,
    sync::{Arc, Mutex, PoisonError},
};

use chrono_tz::Tz;
use minijinja::{
    machinery::{self, WhitespaceConfig},
    syntax::SyntaxConfig,
    value::Object,
    Environment, ErrorKind, UndefinedBehavior, Value,
};

pub use filters::parse_datetime;

/// How a CRM datetime is shown in a message: date and time in the connection's zone,
/// `2026-12-24 10:00`. `date` reads this form back as a time in the render's zone, so
/// `{{ d | date("%m月%d日") }}` still works on a value shown this way.
pub const LOCAL_DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M";

/// Longest template source, in characters.
pub const MAX_SOURCE_CHARS: usize = 10_000;

/// Steps one render may take. Whitelisted templates have no loops, so a render runs each
/// instruction at most once, and the densest 10,000-character template (`{{a==a}}` repeated)
/// takes 5,000; the margin only matters if the whitelist ever lets a loop through.
const FUEL: u64 = 50_000;

/// Why a template was refused or did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text itself is malformed.
    #[error("the template is malformed: {0}")]
    Syntax(String),
    /// The template uses something outside the whitelist; says what and on which line.
    #[error("{0}")]
    NotAllowed(String),
    /// The template source is longer than [`MAX_SOURCE_CHARS`].
    #[error("the template has more than {MAX_SOURCE_CHARS} characters")]
    TooLong,
    /// A required variable is not printed outside every `if`.
    #[error("the template must contain {{{{{0}}}}} outside any `if`")]
    MissingRequired(String),
    /// The template prints a variable that was not given.
    #[error("the template uses {{{{{0}}}}} but vars has no {0:?}")]
    MissingVariable(String),
    /// The template prints a relationship (`{{Account}}`) rather than one of its fields.
    #[error("the template prints {{{{{0}}}}}, which holds fields, not one value: name one of them, e.g. {{{{{0}.Name}}}}")]
    NotScalar(String),
    /// The rendered text would have more characters than allowed; rendering stopped there.
    #[error("the text has more than {0} characters")]
    OutputTooLong(usize),
    /// A filter refused its value, or rendering ran out of fuel.
    #[error("the template did not render: {0}")]
    Render(String),
}

/// What a template may do with particular variables, beyond the common whitelist.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// Variables that may only be printed whole, `{{ name }}`: never tested, filtered or indexed,
    /// so nothing about the rendered text (its length, its encoding) depends on their value.
    pub protected: &'a [&'a str],
    /// Variables that must be printed at least once outside any `if`.
    pub required: &'a [&'a str],
}

/// How a template renders.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// The zone `date` shows times in when the template names none.
    pub time_zone: Tz,
    /// Most characters (Unicode scalar values) the text may have; rendering stops past it.
    ///
    /// Callers pass `delivery.max_characters`: SMS length counts every character at least once,
    /// so a text over this cap would be refused as too long anyway.
    pub max_chars: usize,
}

impl RenderOptions {
    /// Japan time (`Asia/Tokyo`) and at most `max_chars` characters.
    pub fn japan(max_chars: usize) -> Self {
        Self {
            time_zone: chrono_tz::Asia::Tokyo,
            max_chars,
        }
    }
}

/// A template that passed the whitelist, ready to render.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
}

impl Template {
    /// Parse `source` and check it against the whitelist and `rules`.
    pub fn compile(source: &str, rules: &Rules<'_>) -> Result<Self, TemplateError> {
        if source.chars().count() > MAX_SOURCE_CHARS {
            return Err(TemplateError::TooLong);
        }
        let whitespace = WhitespaceConfig {
            keep_trailing_newline: true,
            ..WhitespaceConfig::default()
        };
        let root = machinery::parse(source, "template", SyntaxConfig, whitespace)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        whitelist::check(&root, rules)?;
        Ok(Self {
            source: source.to_string(),
        })
    }

    /// Fill the template from `vars`; a printed variable without a value is `MissingVariable`,
    /// while in an `if` a missing variable is simply false.
    pub fn render(
        &self,
        vars: &BTreeMap<String, String>,
        options: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let mut env = Environment::new();
        // SemiStrict: printing (or filtering) a missing variable fails, testing it is false.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(FUEL));
        env.add_filter("default", filters::default);
        env.add_filter("number", filters::number);
        env.add_filter("urlencode", filters::urlencode);
        let zone = options.time_zone;
        env.add_filter(
            "date",
            move |value: String, format: Option<String>, named_zone: Option<String>| {
                filters::date(&value, format.as_deref(), named_zone.as_deref(), zone)
            },
        );
        let template = env
            .template_from_str(&self.source)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let fields = Fields::new(vars);
        let last_missing = fields.last_missing.clone();
        let not_scalar = fields.not_scalar.clone();
        let mut out = CappedText::new(options.max_chars);
        let rendered = template
            .render_captured_to(Value::from_object(fields), &mut out)
            .map(|_| ());
        match rendered {
            Ok(()) => Ok(out.text),
            Err(_) if out.overflowed => Err(TemplateError::OutputTooLong(options.max_chars)),
            Err(_)
                if not_scalar
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some() =>
            {
                let name = not_scalar
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .unwrap_or_default();
                Err(TemplateError::NotScalar(name))
            }
            Err(e) => Err(match e.kind() {
                ErrorKind::UndefinedError => {
                    match last_missing
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                    {
                        Some(name) => TemplateError::MissingVariable(name),
                        None => TemplateError::Render(describe(&e)),
                    }
                }
                ErrorKind::OutOfFuel => {
                    TemplateError::Render("it takes more steps than an SMS template may".into())
                }
                _ => TemplateError::Render(describe(&e)),
            }),
        }
    }
}

/// The variables a render sees; remembers the last one asked for and not given.
///
/// Rendering stops at the first missing variable that is printed, and that lookup is the last
/// miss, so this names it exactly, even after misses that `if` tests shrugged off.
///
/// A record's relationship fields come flat, by path (`Account.Name`): looking up `Account`
/// gives the fields under that prefix, so `{{ Account.Name }}` reads as in Salesforce, while
/// printing `{{ Account }}` itself stops the render and is named as no single value.
#[derive(Debug)]
struct Fields {
    values: Arc<BTreeMap<String, String>>,
    /// `""` at the top, `Account.` under a relationship.
    prefix: String,
    last_missing: Arc<Mutex<Option<String>>>,
    not_scalar: Arc<Mutex<Option<String>>>,
}

impl Fields {
    fn new(values: &BTreeMap<String, String>) -> Self {
        Self {
            values: Arc::new(values.clone()),
            prefix: String::new(),
            last_missing: Arc::default(),
            not_scalar: Arc::default(),
        }
    }

    /// Whether some field's path runs through `name`.
    fn has_fields_under(&self, name: &str) -> bool {
        let under = format!("{name}.");
        self.values
            .range(under.clone()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(&under))
    }
}

fn remember(slot: &Mutex<Option<String>>, name: String) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(name);
}

impl Object for Fields {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = format!("{}{}", self.prefix, key.as_str()?);
        if let Some(value) = self.values.get(&name) {
            return Some(Value::from(value.as_str()));
        }
        if self.has_fields_under(&name) {
            return Some(Value::from_object(Fields {
                values: self.values.clone(),
                prefix: format!("{name}."),
                last_missing: self.last_missing.clone(),
                not_scalar: self.not_scalar.clone(),
            }));
        }
        remember(&self.last_missing, name);
        None
    }

    fn render(self: &Arc<Self>, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.prefix.trim_end_matches('.').to_string();
        remember(&self.not_scalar, name);
        Err(std::fmt::Error)
    }
}

/// The rendered text, refusing any write that would take it past `max_chars` characters.
struct CappedText {
    text: String,
    chars: usize,
    max_chars: usize,
    overflowed: bool,
}

impl CappedText {
    fn new(max_chars: usize) -> Self {
        Self {
            text: String::new(),
            chars: 0,
            max_chars,
            overflowed: false,
        }
    }
}

impl io::Write for CappedText {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // minijinja writes whole `str`s, so each buffer is valid UTF-8 on its own.
        let piece =
            std::str::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let chars = self.chars + piece.chars().count();
        if chars > self.max_chars {
            self.overflowed = true;
            return Err(io::Error::other("the text is too long"));
        }
        self.chars = chars;
        self.text.push_str(piece);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn describe(e: &minijinja::Error) -> String {
    match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("{detail} (line {line})"),
        (Some(detail), None) => detail.to_string(),
        (None, Some(line)) => format!("{} (line {line})", e.kind()),
        (None, None) => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn render(source: &str, pairs: &[(&str, &str)]) -> Result<String, TemplateError> {
        Template::compile(source, &Rules::default())?
            .render(&vars(pairs), &RenderOptions::japan(1_000))
    }

    #[test]
    fn merge_fields_are_filled_from_vars() {
        let out = render(
            "{{LastName}}様 ご予約は{{Appointment_Date__c}}です",
            &[("LastName", "山田"), ("Appointment_Date__c", "12/1")],
        )
        .unwrap();
        assert_eq!(out, "山田様 ご予約は12/1です");
    }

    #[test]
    fn japanese_field_names_work() {
        assert_eq!(render("{{氏名}}様", &[("氏名", "佐藤")]).unwrap(), "佐藤様");
    }

    #[test]
    fn a_trailing_newline_is_kept() {
        assert_eq!(render("{{a}}\n", &[("a", "x")]).unwrap(), "x\n");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = render("{{a}} {{b}}", &[("a", "1")]).unwrap_err();
        assert_eq!(err, TemplateError::MissingVariable("b".into()));
        assert_eq!(
            err.to_string(),
            "the template uses {{b}} but vars has no \"b\""
        );
    }

    #[test]
    fn the_missing_variable_named_is_the_one_printed_not_one_tested_before() {
        let err = render("{% if nick %}{{nick}}{% endif %}{{name}}", &[]).unwrap_err();
        assert_eq!(err, TemplateError::MissingVariable("name".into()));
    }

    #[test]
    fn a_missing_variable_given_to_a_filter_is_named() {
        assert_eq!(
            render("{{ amount | number }}", &[]).unwrap_err(),
            TemplateError::MissingVariable("amount".into())
        );
    }

    #[test]
    fn no_builtin_globals_exist() {
        assert_eq!(
            render("{{ range }}", &[]).unwrap_err(),
            TemplateError::MissingVariable("range".into())
        );
    }

    #[test]
    fn values_are_not_html_escaped() {
        assert_eq!(render("{{x}}", &[("x", "<a&b>")]).unwrap(), "<a&b>");
    }

    #[test]
    fn values_are_data_never_template_source() {
        assert_eq!(render("{{x}}", &[("x", "{{y}}")]).unwrap(), "{{y}}");
    }

    #[test]
    fn malformed_template_is_a_syntax_error() {
        assert!(matches!(
            render("{{ a ", &[("a", "1")]),
            Err(TemplateError::Syntax(_))
        ));
        assert!(matches!(
            render("{% macro m() %}{% endmacro %}", &[]),
            Err(TemplateError::Syntax(_))
        ));
    }

    #[test]
    fn if_elif_else_choose_by_equality() {
        let source = r#"{% if plan == "gold" %}G{% elif plan != "free" and not trial %}P{% else %}F{% endif %}"#;
        assert_eq!(render(source, &[("plan", "gold")]).unwrap(), "G");
        assert_eq!(render(source, &[("plan", "pro")]).unwrap(), "P");
        assert_eq!(
            render(source, &[("plan", "pro"), ("trial", "yes")]).unwrap(),
            "F"
        );
        assert_eq!(render(source, &[("plan", "free")]).unwrap(), "F");
    }

    #[test]
    fn a_missing_variable_tested_alone_is_false() {
        let source = r#"{% if nick %}{{nick}}{% else %}お客{% endif %}様{% if vip or not member %}!{% endif %}"#;
        assert_eq!(render(source, &[("member", "1")]).unwrap(), "お客様");
        assert_eq!(
            render(source, &[("nick", ""), ("member", "1")]).unwrap(),
            "お客様"
        );
        assert_eq!(
            render(source, &[("nick", "タロウ"), ("vip", "1")]).unwrap(),
            "タロウ様!"
        );
    }

    #[test]
    fn a_missing_variable_compared_is_named_so_a_misspelt_field_is_caught() {
        assert_eq!(
            render(
                r#"{% if plna == "gold" %}G{% endif %}"#,
                &[("plan", "gold")]
            )
            .unwrap_err(),
            TemplateError::MissingVariable("plna".into())
        );
    }

    #[test]
    fn filters_work_in_templates() {
        let out = render(
            r#"{{ nick | default("お客") }}様 {{ amount | number }}円 {{ d | date("%-m月%-d日(%J) %H:%M") }}"#,
            &[("amount", "1234567.5"), ("d", "2026-12-01T00:00:00.000Z")],
        )
        .unwrap();
        assert_eq!(out, "お客様 1,234,567.5円 12月1日(火) 09:00");
    }

    #[test]
    fn the_default_zone_comes_from_the_render_options() {
        let template = Template::compile("{{ d | date }}", &Rules::default()).unwrap();
        let options = RenderOptions {
            time_zone: chrono_tz::America::Los_Angeles,
            ..RenderOptions::japan(100)
        };
        let out = template
            .render(&vars(&[("d", "2026-12-01T00:00:00Z")]), &options)
            .unwrap();
        assert_eq!(out, "2026/11/30 16:00");
    }

    #[test]
    fn a_value_a_filter_refuses_is_a_render_error_naming_the_filter() {
        let err = render("{{ n | number }}", &[("n", "abc")]).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render(m) if m.contains("`number` filter")),
            "{err:?}"
        );
        let err = render("{{ d | date }}", &[("d", "someday")]).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render(m) if m.contains("`date` filter")),
            "{err:?}"
        );
    }

    #[test]
    fn a_source_over_the_limit_is_too_long() {
        let source = "あ".repeat(MAX_SOURCE_CHARS + 1);
        assert_eq!(
            Template::compile(&source, &Rules::default()).unwrap_err(),
            TemplateError::TooLong
        );
        assert!(Template::compile(&source[3..], &Rules::default()).is_ok());
    }

    #[test]
    fn output_past_the_cap_stops_rendering_with_a_typed_error() {
        let template = Template::compile("{{a}}{{a}}{{a}}", &Rules::default()).unwrap();
        let a = vars(&[("a", "あいう")]);
        assert_eq!(
            template.render(&a, &RenderOptions::japan(9)).unwrap(),
            "あいうあいうあいう"
        );
        assert_eq!(
            template.render(&a, &RenderOptions::japan(8)).unwrap_err(),
            TemplateError::OutputTooLong(8)
        );
    }

    #[test]
    fn huge_values_printed_many_times_stop_at_the_cap() {
        let source = "{{a}}".repeat(MAX_SOURCE_CHARS / 5);
        let template = Template::compile(&source, &Rules::default()).unwrap();
        let a = vars(&[("a", &"x".repeat(60_000))]);
        assert_eq!(
            template.render(&a, &RenderOptions::japan(660)).unwrap_err(),
            TemplateError::OutputTooLong(660)
        );
    }

    #[test]
    fn the_densest_templates_of_the_largest_size_render_within_fuel() {
        let pieces = [
            "{{a}}",
            "{{a==a}}",
            "{{a and a}}",
            "{%if a%}{%endif%}",
            r#"{%if a=="1" or not b%}{%endif%}"#,
            "{{a|number|number}}",
            r#"{{b|default(1)}}"#,
        ];
        for piece in pieces {
            let source = piece.repeat(MAX_SOURCE_CHARS / piece.chars().count());
            let template = Template::compile(&source, &Rules::default()).unwrap();
            let out = template.render(&vars(&[("a", "1")]), &RenderOptions::japan(100_000));
            assert!(out.is_ok(), "{piece}: {out:?}");
        }
    }

    #[test]
    fn fuel_stops_a_loop_the_whitelist_might_ever_miss() {
        // Built without `compile`, as if the whitelist had a hole: a million iterations.
        let nested = Template {
            source: format!(
                "{}x{}",
                "{% for a in [1,2,3,4,5,6,7,8,9,10] %}".repeat(6),
                "{% endfor %}".repeat(6)
            ),
        };
        let started = std::time::Instant::now();
        let err = nested
            .render(&vars(&[]), &RenderOptions::japan(10_000_000))
            .unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render(m) if m.contains("more steps")),
            "{err:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn protected_variables_may_only_be_printed_whole() {
        let rules = Rules {
            protected: &["code"],
            required: &["code"],
        };
        assert!(Template::compile("認証コード: {{ code }}", &rules).is_ok());
        assert!(Template::compile("{{code}} {% if x %}{{code}}{% endif %}", &rules).is_ok());
        for leaky in [
            r#"{% if code[0] == "1" %}x{% endif %}{{code}}"#,
            r#"{% if code == "123456" %}x{% endif %}{{code}}"#,
            r#"{% if code %}x{% endif %}{{code}}"#,
            r#"{{ code | default("0") }}"#,
            r#"{{ code | number }}{{code}}"#,
            r#"{{ code or x }}{{code}}"#,
            r#"{{ not code }}{{code}}"#,
        ] {
            let err = Template::compile(leaky, &rules).unwrap_err();
            assert!(
                matches!(err, TemplateError::NotAllowed(_)),
                "{leaky}: {err:?}"
            );
        }
    }

    #[test]
    fn a_refused_protected_variable_is_named() {
        let rules = Rules {
            protected: &["code"],
            required: &[],
        };
        let err = Template::compile(r#"{% if code == "1" %}x{% endif %}"#, &rules).unwrap_err();
        assert_eq!(
            err.to_string(),
            "using `code` other than as a whole {{ code }} is not allowed in an SMS template (line 1)"
        );
    }

    #[test]
    fn a_required_variable_must_be_printed_outside_any_if() {
        let rules = Rules {
            protected: &["code"],
            required: &["code"],
        };
        for missing in [
            "hello {{service}}",
            "{% if x %}{{code}}{% endif %}",
            "{{ codes }}",
        ] {
            assert_eq!(
                Template::compile(missing, &rules).unwrap_err(),
                TemplateError::MissingRequired("code".into()),
                "{missing}"
            );
        }
    }

    #[test]
    fn a_relationship_field_is_reached_by_its_path_as_in_salesforce() {
        let vars: BTreeMap<String, String> = [
            ("Name", "APT-1"),
            ("Account.Name", "山田商事"),
            ("Owner.Manager.Name", "佐藤"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let render = |source: &str| {
            Template::compile(source, &Rules::default())?.render(&vars, &RenderOptions::japan(660))
        };
        assert_eq!(
            render("{{Account.Name}}様 {{Name}} 担当{{ Owner.Manager.Name }}").unwrap(),
            "山田商事様 APT-1 担当佐藤"
        );
        assert_eq!(
            render("{{Account.Phone}}"),
            Err(TemplateError::MissingVariable("Account.Phone".into()))
        );
        assert_eq!(
            render("{% if Account.Phone %}x{% endif %}{{ Account.Name | default('') }}").unwrap(),
            "山田商事"
        );
        assert_eq!(
            render("{{Account}}"),
            Err(TemplateError::NotScalar("Account".into()))
        );
        assert_eq!(
            render("{{Owner.Manager}}"),
            Err(TemplateError::NotScalar("Owner.Manager".into()))
        );
    }

    #[test]
    fn a_protected_variable_has_no_fields_to_reach() {
        let rules = Rules {
            protected: &["code"],
            required: &[],
        };
        assert!(matches!(
            Template::compile("{{ code.x }}", &rules),
            Err(TemplateError::NotAllowed(_))
        ));
    }
}
