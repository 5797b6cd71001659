//! Merge fields: `{{name}}` templates rendered with minijinja in strict mode.
//!
//! minijinja is a sandboxed template engine: templates cannot call code, and with its builtin
//! filters and functions left out they can only insert the variables they are given.

use std::collections::{BTreeMap, HashSet};

use minijinja::{Environment, ErrorKind, UndefinedBehavior};

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text itself is malformed.
    #[error("the template is malformed: {0}")]
    Syntax(String),
    /// The template names a variable that was not given.
    #[error("the template uses {{{{{0}}}}} but vars has no {0:?}")]
    MissingVariable(String),
}

/// Render `source`, filling `{{name}}` fields from `vars`; every field must be given.
pub fn render(source: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let template = env
        .template_from_str(source)
        .map_err(|e| TemplateError::Syntax(describe(&e)))?;
    template.render(vars).map_err(|e| {
        if e.kind() == ErrorKind::UndefinedError {
            let given: HashSet<&str> = vars.keys().map(String::as_str).collect();
            let mut missing: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|name| !given.contains(name.as_str()))
                .collect();
            missing.sort();
            if let Some(name) = missing.into_iter().next() {
                return TemplateError::MissingVariable(name);
            }
        }
        TemplateError::Syntax(describe(&e))
    })
}

fn describe(e: &minijinja::Error) -> String {
    match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("{detail} (line {line})"),
        (Some(detail), None) => detail.to_string(),
        _ => e.kind().to_string(),
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

    #[test]
    fn merge_fields_are_filled_from_vars() {
        let out = render(
            "{{LastName}}様 ご予約は{{Appointment_Date__c}}です",
            &vars(&[("LastName", "山田"), ("Appointment_Date__c", "12/1")]),
        )
        .unwrap();
        assert_eq!(out, "山田様 ご予約は12/1です");
    }

    #[test]
    fn japanese_field_names_work() {
        let out = render("{{氏名}}様", &vars(&[("氏名", "佐藤")])).unwrap();
        assert_eq!(out, "佐藤様");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = render("{{a}} {{b}}", &vars(&[("a", "1")])).unwrap_err();
        assert_eq!(err, TemplateError::MissingVariable("b".into()));
    }

    #[test]
    fn values_are_not_html_escaped() {
        let out = render("{{x}}", &vars(&[("x", "<a&b>")])).unwrap();
        assert_eq!(out, "<a&b>");
    }

    #[test]
    fn malformed_template_is_a_syntax_error() {
        assert!(matches!(
            render("{{ a ", &vars(&[("a", "1")])),
            Err(TemplateError::Syntax(_))
        ));
    }

    #[test]
    fn templates_cannot_call_filters_or_functions() {
        assert!(render("{{ a|upper }}", &vars(&[("a", "x")])).is_err());
        assert!(render("{{ range(3) }}", &vars(&[])).is_err());
    }
}
