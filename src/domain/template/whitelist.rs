//! What a template may contain, checked on minijinja's syntax tree before it ever renders.
//!
//! A whitelist rather than a blacklist: every node kind not named here is refused, so a loop, an
//! assignment or a string concatenation can never make rendering slow or huge.

use minijinja::{
    machinery::{
        ast::{self, BinOpKind, CallArg, Expr, Stmt, UnaryOpKind},
        Span,
    },
    value::ValueKind,
    Value,
};

use super::{filters, Rules, TemplateError};

/// Longest string constant (a comparison value, a fallback, a date format).
const MAX_CONSTANT_CHARS: usize = 200;

/// Deepest expression nesting; merge-field conditions need a handful of levels.
const MAX_DEPTH: usize = 16;

/// The variable a field path (`a`, `a.b`, `a.b.c`) starts from; `None` for any other expression.
fn path_root<'a>(expr: &Expr<'a>) -> Option<&'a str> {
    match expr {
        Expr::Var(var) => Some(var.id),
        Expr::GetAttr(attr) => path_root(&attr.expr),
        _ => None,
    }
}

/// Check a parsed template against the whitelist and `rules`.
pub(super) fn check(root: &Stmt<'_>, rules: &Rules<'_>) -> Result<(), TemplateError> {
    let mut walk = Walk {
        rules,
        printed_unconditionally: Vec::new(),
    };
    walk.statement(root, false)?;
    for name in rules.required {
        if !walk.printed_unconditionally.contains(name) {
            return Err(TemplateError::MissingRequired((*name).to_string()));
        }
    }
    Ok(())
}

struct Walk<'r> {
    rules: &'r Rules<'r>,
    printed_unconditionally: Vec<&'r str>,
}

impl<'r> Walk<'r> {
    fn statements(&mut self, list: &[Stmt<'_>], conditional: bool) -> Result<(), TemplateError> {
        list.iter()
            .try_for_each(|stmt| self.statement(stmt, conditional))
    }

    fn statement(&mut self, stmt: &Stmt<'_>, conditional: bool) -> Result<(), TemplateError> {
        match stmt {
            Stmt::Template(template) => self.statements(&template.children, conditional),
            Stmt::EmitRaw(_) => Ok(()),
            Stmt::EmitExpr(emit) => {
                if let Expr::Var(var) = &emit.expr {
                    if let Some(name) = self.protected(var.id) {
                        if !conditional {
                            self.printed_unconditionally.push(name);
                        }
                        return Ok(());
                    }
                }
                self.expression(&emit.expr, 0)
            }
            Stmt::IfCond(cond) => {
                self.expression(&cond.expr, 0)?;
                self.statements(&cond.true_body, true)?;
                self.statements(&cond.false_body, true)
            }
            Stmt::ForLoop(s) => Err(refused("`for` loops are", s.span())),
            Stmt::WithBlock(s) => Err(refused("`with` blocks are", s.span())),
            Stmt::Set(s) => Err(refused("`set` is", s.span())),
            Stmt::SetBlock(s) => Err(refused("`set` blocks are", s.span())),
            Stmt::AutoEscape(s) => Err(refused("`autoescape` blocks are", s.span())),
            Stmt::FilterBlock(s) => Err(refused("`filter` blocks are", s.span())),
            Stmt::Do(s) => Err(refused("`do` is", s.span())),
        }
    }

    fn expression(&self, expr: &Expr<'_>, depth: usize) -> Result<(), TemplateError> {
        if depth > MAX_DEPTH {
            return Err(refused(
                &format!("nesting expressions more than {MAX_DEPTH} deep is"),
                expr.span(),
            ));
        }
        let inner = depth + 1;
        match expr {
            Expr::Var(var) => match self.protected(var.id) {
                Some(name) => Err(refused(
                    &format!("using `{name}` other than as a whole {{{{ {name} }}}} is"),
                    var.span(),
                )),
                None => Ok(()),
            },
            Expr::Const(c) => constant(&c.value, c.span()),
            Expr::UnaryOp(op) => match op.op {
                UnaryOpKind::Not => self.expression(&op.expr, inner),
                UnaryOpKind::Neg => Err(refused("arithmetic (`-`) is", op.span())),
            },
            // minijinja parses a single comparison as a binary operator, and only a chain
            // (`a == b == c`) as `Compare`.
            Expr::BinOp(op) => match op.op {
                BinOpKind::ScAnd | BinOpKind::ScOr | BinOpKind::Eq | BinOpKind::Ne => {
                    self.expression(&op.left, inner)?;
                    self.expression(&op.right, inner)
                }
                BinOpKind::Lt | BinOpKind::Lte | BinOpKind::Gt | BinOpKind::Gte | BinOpKind::In => {
                    Err(refused(
                        &format!("the `{}` comparison is", binop_symbol(op.op)),
                        op.span(),
                    ))
                }
                other => Err(refused(
                    &format!("the `{}` operator is", binop_symbol(other)),
                    op.span(),
                )),
            },
            Expr::Compare(cmp) => Err(refused("chained comparisons are", cmp.span())),
            Expr::Filter(filter) => self.filter(filter, inner),
            Expr::Slice(s) => Err(refused("slicing (`[a:b]`) is", s.span())),
            // A field path (`Account.Name`): a record's relationship field, as merge fields
            // name them in Salesforce; nothing else may be looked up on a value.
            Expr::GetAttr(attr) => match path_root(&attr.expr) {
                Some(root) if self.protected(root).is_none() => Ok(()),
                _ => Err(refused(
                    "attribute access (`.name`) other than a field path such as `Account.Name` is",
                    attr.span(),
                )),
            },
            Expr::GetItem(s) => Err(refused("indexing (`[…]`) is", s.span())),
            Expr::Call(s) => Err(refused("calling functions is", s.span())),
            Expr::List(s) => Err(refused("list literals are", s.span())),
            Expr::Map(s) => Err(refused("map literals are", s.span())),
            Expr::IfExpr(s) => Err(refused("inline `… if … else …` is", s.span())),
            Expr::Test(s) => Err(refused(&format!("the `is {}` test is", s.name), s.span())),
        }
    }

    fn filter(
        &self,
        filter: &ast::Spanned<ast::Filter<'_>>,
        depth: usize,
    ) -> Result<(), TemplateError> {
        let span = filter.span();
        if !filters::NAMES.contains(&filter.name) {
            return Err(refused(&format!("the `{}` filter is", filter.name), span));
        }
        if let Some(input) = &filter.expr {
            self.expression(input, depth)?;
        }
        let mut args = Vec::with_capacity(filter.args.len());
        for arg in &filter.args {
            match arg {
                CallArg::Pos(Expr::Const(c)) => {
                    constant(&c.value, c.span())?;
                    args.push(&c.value);
                }
                _ => {
                    return Err(refused(
                        &format!("a `{}` argument other than a constant is", filter.name),
                        span,
                    ))
                }
            }
        }
        filter_arguments(filter.name, &args).map_err(|problem| {
            TemplateError::NotAllowed(format!("{problem} (line {})", span.start_line))
        })
    }

    /// The protected name `id` is, if it is one.
    fn protected(&self, id: &str) -> Option<&'r str> {
        self.rules
            .protected
            .iter()
            .copied()
            .find(|name| *name == id)
    }
}

/// Why `args` do not suit the filter `name`, checked now so that rendering cannot fail on them.
fn filter_arguments(name: &str, args: &[&Value]) -> Result<(), String> {
    match (name, args) {
        ("default", [fallback])
            if matches!(fallback.kind(), ValueKind::String | ValueKind::Number) =>
        {
            Ok(())
        }
        ("default", _) => Err("`default` takes one argument, a string or number fallback".into()),
        ("number", []) => Ok(()),
        ("number", [decimals]) => match i64::try_from((*decimals).clone()) {
            Ok(places) if (0..=filters::MAX_DECIMALS).contains(&places) => Ok(()),
            _ => Err(format!(
                "`number` takes the decimals to round to, 0 to {}",
                filters::MAX_DECIMALS
            )),
        },
        ("number", _) => Err("`number` takes at most one argument, the decimals".into()),
        ("urlencode", []) => Ok(()),
        ("urlencode", _) => Err("`urlencode` takes no argument".into()),
        ("date", _) if args.len() <= 2 => {
            let strings: Option<Vec<&str>> = args.iter().map(|v| v.as_str()).collect();
            match strings.as_deref() {
                Some([]) => Ok(()),
                Some([format]) => filters::check_format(format),
                Some([format, zone]) => {
                    filters::check_format(format)?;
                    filters::parse_zone(zone).map(|_| ())
                }
                _ => Err("`date` takes a format and a time zone, both strings".into()),
            }
        }
        ("date", _) => Err("`date` takes at most two arguments, a format and a time zone".into()),
        (other, _) => Err(format!("the `{other}` filter is unknown")),
    }
}

/// Refuse constants other than short strings, numbers, booleans and none.
fn constant(value: &Value, span: Span) -> Result<(), TemplateError> {
    match value.kind() {
        ValueKind::String
            if value.as_str().map_or(0, |s| s.chars().count()) > MAX_CONSTANT_CHARS =>
        {
            Err(refused(
                &format!("a string constant over {MAX_CONSTANT_CHARS} characters is"),
                span,
            ))
        }
        ValueKind::String | ValueKind::Number | ValueKind::Bool | ValueKind::None => Ok(()),
        other => Err(refused(&format!("a {other} constant is"), span)),
    }
}

/// `"{what} not allowed in an SMS template (line N)"`; `what` ends with its verb, "is" or "are".
fn refused(what: &str, span: Span) -> TemplateError {
    TemplateError::NotAllowed(format!(
        "{what} not allowed in an SMS template (line {})",
        span.start_line
    ))
}

fn binop_symbol(op: BinOpKind) -> &'static str {
    match op {
        BinOpKind::Eq => "==",
        BinOpKind::Ne => "!=",
        BinOpKind::Lt => "<",
        BinOpKind::Lte => "<=",
        BinOpKind::Gt => ">",
        BinOpKind::Gte => ">=",
        BinOpKind::ScAnd => "and",
        BinOpKind::ScOr => "or",
        BinOpKind::Add => "+",
        BinOpKind::Sub => "-",
        BinOpKind::Mul => "*",
        BinOpKind::Div => "/",
        BinOpKind::FloorDiv => "//",
        BinOpKind::Rem => "%",
        BinOpKind::Pow => "**",
        BinOpKind::Concat => "~",
        BinOpKind::In => "in",
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Rules, Template, TemplateError};

    fn refusal(source: &str) -> String {
        match Template::compile(source, &Rules::default()) {
            Err(TemplateError::NotAllowed(message)) => message,
            other => panic!("{source} was not refused: {other:?}"),
        }
    }

    #[test]
    fn merge_fields_conditions_and_the_three_filters_are_allowed() {
        for source in [
            "{{ name }}様 {# a comment #}",
            r#"{% if plan == "gold" %}a{% elif plan != "x" or (a and not b) %}b{% else %}c{% endif %}"#,
            r#"{{ amount | number }} {{ amount | number(2) }} {{ nick | default("お客") }}"#,
            r#"{{ d | date }} {{ d | date("%-m月%-d日(%J)") }} {{ d | date("%H:%M", "UTC") }}"#,
            r#"{% if n == 1 or f == true or z == none %}x{% endif %}{% raw %}{{ literal }}{% endraw %}"#,
            r#"{{ "2026-12-01" | date }}"#,
        ] {
            let compiled = Template::compile(source, &Rules::default());
            assert!(compiled.is_ok(), "{source}: {compiled:?}");
        }
    }

    #[test]
    fn statements_other_than_if_are_refused_naming_them_and_their_line() {
        for (source, named) in [
            (
                "{% for a in [1,2] %}{% for b in [1,2] %}x{% endfor %}{% endfor %}",
                "`for` loops",
            ),
            (
                "x\n{% set s = 'x' %}{{ s }}",
                "`set` is not allowed in an SMS template (line 2)",
            ),
            ("{% set s %}x{% endset %}", "`set` blocks"),
            ("{% with a = 1 %}{{ a }}{% endwith %}", "`with` blocks"),
            ("{% filter upper %}x{% endfilter %}", "`filter` blocks"),
            (
                "{% autoescape true %}x{% endautoescape %}",
                "`autoescape` blocks",
            ),
            ("{% do f() %}", "`do`"),
            (
                "{% if a %}\n\n{% for x in y %}{% endfor %}{% endif %}",
                "(line 3)",
            ),
        ] {
            let message = refusal(source);
            assert!(message.contains(named), "{source}: {message}");
        }
    }

    #[test]
    fn multi_template_and_macro_statements_do_not_even_parse() {
        for source in [
            "{% macro m() %}x{% endmacro %}",
            "{% include 'other' %}",
            "{% extends 'base' %}",
            "{% import 'm' as m %}",
            "{% block b %}x{% endblock %}",
        ] {
            assert!(
                matches!(
                    Template::compile(source, &Rules::default()),
                    Err(TemplateError::Syntax(_))
                ),
                "{source}"
            );
        }
    }

    #[test]
    fn expressions_other_than_names_constants_and_logic_are_refused_naming_them() {
        for (source, named) in [
            ("{{ (a | default('x')).b }}", "attribute access"),
            ("{{ a[0] }}", "indexing"),
            ("{{ a[1:2] }}", "slicing"),
            ("{{ f() }}", "calling functions"),
            ("{{ a.upper() }}", "calling functions"),
            ("{{ [1, 2] }}", "list literals"),
            ("{{ {'a': 1} }}", "map literals"),
            ("{{ a if b else c }}", "inline"),
            ("{{ a is defined }}", "`is defined` test"),
            ("{{ a ~ b }}", "`~` operator"),
            ("{{ a + 1 }}", "`+` operator"),
            ("{{ a - 1 }}", "`-` operator"),
            ("{{ a * 3 }}", "`*` operator"),
            ("{{ a / 3 }}", "`/` operator"),
            ("{{ a // 3 }}", "`//` operator"),
            ("{{ a % 3 }}", "`%` operator"),
            ("{{ a ** 3 }}", "`**` operator"),
            ("{{ -a }}", "arithmetic"),
            ("{% if a < b %}{% endif %}", "`<` comparison"),
            ("{% if a >= b %}{% endif %}", "`>=` comparison"),
            ("{% if a in b %}{% endif %}", "`in` comparison"),
            ("{% if a not in b %}{% endif %}", "`in` comparison"),
            ("{% if a == b == c %}{% endif %}", "chained comparisons"),
        ] {
            let message = refusal(source);
            assert!(message.contains(named), "{source}: {message}");
        }
    }

    #[test]
    fn only_the_three_filters_with_constant_arguments_are_allowed() {
        for (source, named) in [
            ("{{ a | upper }}", "`upper` filter"),
            ("{{ a | safe }}", "`safe` filter"),
            ("{{ a | default(b) }}", "other than a constant"),
            ("{{ a | default(fallback='x') }}", "other than a constant"),
            ("{{ a | default }}", "`default` takes one argument"),
            (
                "{{ a | default('x', true) }}",
                "`default` takes one argument",
            ),
            ("{{ a | number(7) }}", "0 to 6"),
            ("{{ a | number('2') }}", "0 to 6"),
            ("{{ a | number(1, 2) }}", "at most one"),
            ("{{ a | date(1) }}", "both strings"),
            ("{{ a | date('%Q') }}", "not a valid strftime format"),
            ("{{ a | date('%Y', 'Mars/Base') }}", "not a time zone"),
            ("{{ a | date('%Y', 'UTC', 1) }}", "at most two"),
        ] {
            let message = refusal(source);
            assert!(message.contains(named), "{source}: {message}");
        }
    }

    #[test]
    fn long_string_constants_are_refused() {
        let long = format!("{{% if a == \"{}\" %}}{{% endif %}}", "あ".repeat(201));
        assert!(refusal(&long).contains("over 200 characters"));
        let fits = format!("{{% if a == \"{}\" %}}{{% endif %}}", "あ".repeat(200));
        assert!(Template::compile(&fits, &Rules::default()).is_ok());
    }

    #[test]
    fn deeply_nested_expressions_are_refused() {
        let deep = format!("{{{{ {}a }}}}", "not ".repeat(20));
        assert!(refusal(&deep).contains("more than 16 deep"));
        let chain = format!("{{{{ a{} }}}}", " or a".repeat(40));
        assert!(refusal(&chain).contains("more than 16 deep"));
    }
}
