//! Authorization tests: the rule language (parser and truth tables), the authorizer (roles, scopes, per-method
//! requirements, 401 versus 403, config issues) and OPA (a real Data API server on loopback evaluating Rego).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;
use turnpike_core::{Consumer, Identity, IdentitySource};

use super::*;

/// A request to authorize: owns what [`AuthzInput`] borrows.
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    identity: Option<Identity>,
    ip: IpAddr,
}

impl Req {
    fn get(uri: &str) -> Req {
        Req {
            method: Method::GET,
            uri: uri.parse().unwrap(),
            headers: HeaderMap::new(),
            identity: Some(user()),
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        }
    }

    fn method(mut self, m: Method) -> Req {
        self.method = m;
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.append(name, HeaderValue::from_str(value).unwrap());
        self
    }

    fn anonymous(mut self) -> Req {
        self.identity = None;
        self
    }

    fn identity(mut self, id: Identity) -> Req {
        self.identity = Some(id);
        self
    }

    fn input(&self) -> AuthzInput<'_> {
        AuthzInput {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            identity: self.identity.as_ref(),
            client_ip: self.ip,
            route: "orders",
        }
    }
}

/// A JWT user: roles `reader`, `ops`; scopes `orders:read`, `profile`; plan `gold`; consumer `acme`.
fn user() -> Identity {
    let claims = json!({
        "sub": "u-1",
        "tenant": "t-42",
        "plan": "gold",
        "email": "ann@example.com",
        "age": 42,
        "ratio": 0.5,
        "score": 42.0,
        "big": 9_007_199_254_740_993_u64,
        "admin": true,
        "verified": "true",
        "nothing": null,
        "groups": ["eng", "ops"],
        "nums": [1, 2, 3],
        "realm_access": {"roles": ["admin", "ops"]},
        "a.b": "top-level dotted",
        "a": {"b": "nested"},
        "https://example.com/roles": ["editor"],
        "cognito:groups": ["blue"]
    });
    let mut id = Identity::new(IdentitySource::Jwt, Some(Arc::from("u-1")));
    id.roles = vec![Arc::from("reader"), Arc::from("ops")];
    id.scopes = vec![Arc::from("orders:read"), Arc::from("profile")];
    id.plan = Some(Arc::from("gold"));
    id.consumer = Some(Arc::new(Consumer {
        id: Arc::from("acme"),
        name: Arc::from("Acme"),
        plan: Some(Arc::from("gold")),
        roles: Vec::new(),
        metadata: Default::default(),
    }));
    id.claims = Some(Arc::new(claims.as_object().unwrap().clone()));
    id
}

fn with_roles(roles: &[&str], scopes: &[&str]) -> Identity {
    let mut id = user();
    id.roles = roles.iter().map(|r| Arc::from(*r)).collect();
    id.scopes = scopes.iter().map(|s| Arc::from(*s)).collect();
    id
}

mod rules {
    use super::*;
    use crate::authz::expr::{MAX_DEPTH, MAX_RULE_LEN};

    /// Evaluates `rule` against `req`, panicking on a parse error.
    fn holds_for(rule: &str, req: &Req) -> bool {
        let compiled = parse_rule(rule).unwrap_or_else(|e| panic!("`{rule}` does not parse: {e}"));
        compiled.evaluate(&req.input())
    }

    fn holds(rule: &str) -> bool {
        holds_for(
            rule,
            &Req::get("/orders/7?q=a+b&page=2&enc=%C3%A9t%C3%A9&empty=&q=second").header("x-tenant", "t-42"),
        )
    }

    fn error(rule: &str) -> RuleError {
        match parse_rule(rule) {
            Ok(_) => panic!("`{rule}` parsed"),
            Err(e) => e,
        }
    }

    #[track_caller]
    fn assert_error(rule: &str, column: usize, fragment: &str) {
        let e = error(rule);
        assert_eq!(e.column, column, "`{rule}`: {e}");
        assert!(e.message.contains(fragment), "`{rule}`: {e} (expected `{fragment}`)");
    }

    #[test]
    fn the_issues_tenant_example_compares_a_claim_with_a_header() {
        let rule = "claims.tenant == header.x-tenant";
        assert!(holds_for(rule, &Req::get("/").header("x-tenant", "t-42")));
        assert!(!holds_for(rule, &Req::get("/").header("x-tenant", "t-43")));
        assert!(!holds_for(rule, &Req::get("/")), "a missing header is null: the comparison is false");
        let mut no_tenant = user();
        no_tenant.claims = Some(Arc::new(serde_json::Map::new()));
        assert!(!holds_for(rule, &Req::get("/").identity(no_tenant.clone())), "a missing claim is null too");
        assert!(!holds_for("claims.tenant != header.x-tenant", &Req::get("/").identity(no_tenant)));
        assert!(!holds_for(rule, &Req::get("/").header("x-tenant", "t-42").anonymous()));
    }

    #[test]
    fn the_issues_plan_example_combines_membership_and_negation() {
        let rule = r#"claims.plan in [gold, silver] && !(identity.roles contains "banned")"#;
        assert!(holds(rule));
        assert!(!holds_for(rule, &Req::get("/").identity(with_roles(&["banned"], &[]))));
        let mut bronze = user();
        let mut claims = (**bronze.claims.as_ref().unwrap()).clone();
        claims.insert("plan".into(), json!("bronze"));
        bronze.claims = Some(Arc::new(claims));
        assert!(!holds_for(rule, &Req::get("/").identity(bronze)));
    }

    #[test]
    fn equality_and_inequality_of_strings_numbers_booleans() {
        assert!(holds(r#"claims.sub == "u-1""#));
        assert!(holds(r#"claims.sub != "u-2""#));
        assert!(!holds(r#"claims.sub != "u-1""#));
        assert!(holds("claims.age == 42"));
        assert!(holds("claims.admin == true"));
        assert!(holds("claims.admin != false"));
        assert!(!holds("claims.verified == true"), "a string is not a boolean");
        assert!(holds(r#"claims.verified == "true""#));
        assert!(holds("true == true") && holds("false != true"));
    }

    #[test]
    fn ordering_compares_numbers_numerically_and_strings_lexically() {
        assert!(holds("claims.age > 41") && holds("claims.age >= 42") && holds("claims.age <= 42"));
        assert!(holds("claims.age < 42.5") && !holds("claims.age < 42"));
        assert!(holds("claims.ratio < 1") && holds("claims.ratio == 0.5") && holds("claims.ratio >= 5e-1"));
        assert!(holds(r#""abc" < "abd""#) && holds(r#""B" < "a""#), "strings compare by their bytes");
        assert!(holds(r#""10" < "9""#), "two strings compare lexically, not as numbers");
        assert!(holds("-3 < -2") && holds("-1.5e2 < 0"));
        assert!(!holds("claims.groups < 3"), "lists have no order");
        assert!(!holds("true < false") && !holds("true > false"), "booleans have no order");
    }

    #[test]
    fn integers_and_floats_compare_numerically_and_exactly() {
        assert!(holds("claims.score == 42"), "42.0 == 42");
        assert!(holds("claims.age == 42.0"));
        assert!(holds("claims.big == 9007199254740993"));
        assert!(!holds("claims.big == 9007199254740992"), "large integers are compared exactly");
        assert!(holds("claims.big > 9007199254740992"));
    }

    #[test]
    fn a_number_and_a_string_are_equal_by_text() {
        assert!(holds(r#""42" == 42"#) && holds(r#"42 == "42""#));
        assert!(holds(r#"claims.age == "42""#));
        assert!(holds(r#"claims.score == "42""#), "a float with an integral value reads as an integer");
        assert!(holds(r#"claims.ratio == "0.5""#));
        assert!(!holds(r#""42.0" == 42"#), "by text: `42` is not `42.0`");
        assert!(!holds(r#""042" == 42"#));
        assert!(holds(r#""042" != 42"#));
        assert!(holds_for("claims.age == header.x-age", &Req::get("/").header("x-age", "42")));
    }

    #[test]
    fn a_number_and_a_string_order_numerically_when_the_string_is_a_number() {
        assert!(holds(r#""10" > 9"#), "numerically, not as text");
        assert!(holds(r#"claims.age < "100""#));
        assert!(holds_for("header.x-version >= 2", &Req::get("/").header("x-version", "10")));
        assert!(!holds(r#""abc" < 5"#) && !holds(r#""abc" >= 5"#), "not a number: no order");
        assert!(!holds(r#"" 5" == 5"#) && !holds(r#"" 5" <= 5"#), "no white space around numbers");
    }

    #[test]
    fn null_and_missing_values_compare_only_with_null() {
        assert!(holds("claims.missing == null") && holds("null == claims.missing"));
        assert!(holds("claims.nothing == null"), "a JSON null claim is null");
        assert!(!holds("claims.sub == null") && holds("claims.sub != null") && holds("null != claims.sub"));
        assert!(!holds("claims.missing != null"));
        assert!(holds("null == null") && !holds("null != null"));
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            assert!(!holds(&format!(r#"claims.missing {op} "x""#)), "missing {op} \"x\" is false");
            assert!(!holds(&format!("claims.missing {op} 1")), "missing {op} 1 is false");
            assert!(!holds(&format!("claims.missing {op} claims.other")), "missing {op} missing is false");
        }
        assert!(!holds("claims.missing in [a, b]") && !holds("claims.missing not in [a, b]"));
        assert!(!holds(r#"claims.missing contains "a""#) && !holds(r#""a" in claims.missing"#));
        assert!(!holds(r#"claims.missing matches ".*""#));
        assert!(!holds("query.absent == \"\"") && holds("query.absent == null"));
    }

    #[test]
    fn in_tests_list_membership_or_a_substring() {
        assert!(holds("claims.plan in [gold, silver]") && !holds("claims.plan in [silver, bronze]"));
        assert!(holds("claims.plan not in [silver, bronze]") && !holds("claims.plan not in [gold]"));
        assert!(holds(r#""eng" in claims.groups"#) && holds(r#""hr" not in claims.groups"#));
        assert!(holds(r#""ops" in identity.roles"#));
        assert!(holds(r#""ell" in "hello""#) && !holds(r#""xyz" in "hello""#));
        assert!(holds(r#""@example.com" in claims.email"#));
        assert!(holds(r#""xyz" not in "hello""#));
        assert!(holds("2 in claims.nums") && holds("2.0 in claims.nums") && holds(r#""2" in claims.nums"#));
        assert!(holds(r#"claims.age in [41, "42"]"#), "items compare like ==");
        assert!(holds(r#"4 in "x42""#), "a number is found in a string by its text");
        assert!(!holds(r#""a" in claims.realm_access"#) && !holds(r#""a" not in claims.realm_access"#));
        assert!(!holds("true in true") && !holds("true not in true"), "neither list nor string: false both ways");
        assert!(!holds("claims.plan in []") && holds("claims.plan not in []"));
    }

    #[test]
    fn contains_is_in_with_the_sides_swapped() {
        assert!(holds(r#"identity.roles contains "reader""#) && !holds(r#"identity.roles contains "admin""#));
        assert!(holds(r#"identity.scopes contains "orders:read""#));
        assert!(holds(r#"claims.realm_access.roles contains "admin""#));
        assert!(holds(r#"claims.email contains "@example""#));
    }

    #[test]
    fn matches_is_an_anchored_full_match() {
        assert!(holds(r#"claims.email matches ".*@example\.com""#));
        assert!(holds(r#"claims.email matches '[a-z]+@example\\.com'"#));
        assert!(!holds(r#"claims.email matches "example""#), "a substring is not a full match");
        assert!(holds(r#"claims.sub matches "u-\d+""#), "unknown escapes stay, for regexes");
        assert!(holds(r#""ab" matches "a|ab""#), "the whole alternation is anchored");
        assert!(!holds(r#""xab" matches "a|ab""#));
        assert!(holds(r#"claims.age matches "4\d""#), "numbers match by their text");
        assert!(!holds(r#"claims.groups matches ".*""#), "lists never match");
        assert!(holds(r#"method matches "GET|HEAD""#));
    }

    #[test]
    fn exists_tests_presence() {
        assert!(holds("claims.email exists") && !holds("claims.missing exists"));
        assert!(!holds("claims.nothing exists"), "a null claim does not exist");
        assert!(holds("header.x-tenant exists") && !holds("header.x-other exists"));
        assert!(holds("query.empty exists"), "an empty parameter exists");
        assert!(holds("!(claims.missing exists)"));
        assert!(!holds_for("identity.subject exists", &Req::get("/").anonymous()));
    }

    #[test]
    fn boolean_operators_treat_only_true_as_true() {
        assert!(holds("claims.admin") && !holds("claims.verified") && !holds("claims.missing"));
        assert!(holds("!claims.missing") && holds("!claims.verified") && !holds("!claims.admin"));
        assert!(holds("true && true") && !holds("true && false") && holds("false || true") && !holds("false || false"));
        assert!(!holds(r#""x""#) && !holds("1") && !holds("[true]"));
        assert!(holds("!!true") && !holds("!!!true"));
    }

    #[test]
    fn precedence_is_not_then_comparison_then_and_then_or() {
        assert!(holds("true || false && false"), "&& binds tighter than ||");
        assert!(!holds("(true || false) && false"));
        assert!(!holds("!false && false"), "! binds tighter than &&");
        assert!(holds("!(false && false)"));
        assert!(holds("1 == 1 && 2 == 2 || 3 == 4"));
        assert!(holds("(!false) == true"), "a parenthesized negation compares");
        assert!(holds("false == !true"), "! on the right side is unambiguous");
        assert!(holds("(1 == 1) == true"));
    }

    #[test]
    fn literals_strings_numbers_and_lists() {
        assert!(holds(r#""a\"b" == 'a"b'"#) && holds(r#"'it\'s' == "it's""#));
        assert!(holds(r#""tab\there" != "tab there""#) && holds(r#""\u{e9}" == "é""#));
        assert!(holds(r#""back\\slash" == 'back\\slash'"#));
        assert!(holds(r#""\d" == "\\d""#), "an unknown escape keeps its backslash");
        assert!(holds("0 == 0 && -0 == 0 && 1e3 == 1000 && 2.5E-1 == 0.25"));
        assert!(holds(
            r#"["x y", 3, true, null, gold, orders:read, a-b.c] == ["x y", 3, true, null, "gold", "orders:read", "a-b.c"]"#
        ));
        assert!(holds("[007] == [\"007\"]"), "bare words with leading zeros stay strings");
        assert!(holds("[1, 2,] == [1, 2]") && holds("[] == []") && !holds("[1] == [1, 2]"));
        assert!(holds("claims.groups == [eng, ops]") && !holds("claims.groups == [ops, eng]"));
        assert!(holds("claims.realm_access == claims.realm_access"));
        assert!(holds("[x] contains \"x\"") && holds("[tru] contains \"tru\""));
    }

    #[test]
    fn claim_paths_are_dotted_bracketed_or_indexed() {
        assert!(holds(r#"claims.realm_access.roles contains "ops""#));
        assert!(holds(r#"claims.a.b == "top-level dotted""#), "a top-level claim named by the whole path wins");
        assert!(holds(r#"claims.a["b"] == "nested""#), "brackets name one key");
        assert!(holds(r#"claims["a.b"] == "top-level dotted""#));
        assert!(holds(r#"claims["https://example.com/roles"] contains "editor""#));
        assert!(holds(r#"claims.cognito:groups contains "blue""#));
        assert!(holds(r#"claims.groups.1 == "ops" && claims.groups[0] == "eng""#));
        assert!(holds("claims.groups[2] == null && claims.sub.x == null && claims.nums.0 == 1"));
    }

    #[test]
    fn request_operands_header_query_method_path_client_ip() {
        let req = Req::get("/orders/7?q=a+b&page=2&enc=%C3%A9t%C3%A9&bad=%zz&q=second")
            .method(Method::DELETE)
            .header("x-tenant", "t-42")
            .header("x-tenant", "t-99");
        assert!(holds_for(r#"header.X-Tenant == "t-42""#, &req), "names are case-insensitive; the first value counts");
        assert!(holds_for(r#"header["x-tenant"] == "t-42""#, &req));
        assert!(holds_for(r#"query.q == "a b""#, &req), "decoded, the first value");
        assert!(holds_for(r#"query.enc == "été" && query.bad == "%zz" && query.page == 2"#, &req));
        assert!(holds_for(r#"method == "DELETE" && path == "/orders/7""#, &req));
        assert!(holds_for(r#"client_ip == "192.0.2.7""#, &req));
        assert!(holds_for(r#"path matches "/orders/\d+""#, &req));
    }

    #[test]
    fn identity_operands() {
        assert!(holds(r#"identity.subject == "u-1" && identity.consumer == "acme" && identity.plan == "gold""#));
        assert!(holds(r#"identity.source == "jwt" && identity.scopes contains "profile""#));
        let anon = Req::get("/").anonymous();
        for field in ["subject", "consumer", "plan", "roles", "scopes", "source"] {
            assert!(holds_for(&format!("identity.{field} == null"), &anon), "{field} is null without identity");
        }
        assert!(holds_for("claims.sub == null", &anon));
        let mut no_consumer = user();
        no_consumer.consumer = None;
        assert!(holds_for("identity.consumer == null", &Req::get("/").identity(no_consumer)));
    }

    #[test]
    fn errors_give_the_column_and_what_is_wrong() {
        assert_error("", 1, "empty");
        assert_error("   ", 4, "empty");
        assert_error(r#"claims.tenant = "x""#, 15, "use `==`");
        assert_error("claims.plan == gold", 16, "unknown name `gold`");
        assert_error("claim.plan == \"gold\"", 1, "unknown name `claim`: operands are");
        assert_error("identity.email exists", 9, "unknown identity field `email`");
        assert_error("claims == 1", 7, "`claims` needs a name");
        assert_error("header.x.y == 1", 9, "`header` takes one name");
        assert_error("header.\"x\" == 1", 8, "expected a name after `.`");
        assert_error("method.x == 1", 7, "`method` has no fields");
        assert_error(r#"claims.a == "abc"#, 13, "string is not closed");
        assert_error("claims.plan in [gold, silver", 16, "`[` is not closed");
        assert_error("claims.plan in [gold silver]", 17, "expected `,` or `]`");
        assert_error("[[1]] == 1", 2, "lists do not nest");
        assert_error("(true", 1, "`(` is not closed");
        assert_error("(true false)", 7, "expected `)`");
        assert_error("true)", 5, "without a matching `(`");
        assert_error("true & false", 6, "expected `&&` or `||`");
        assert_error("true && ", 9, "expected a value, found the end");
        assert_error("== 1", 1, "expected a value before `=`");
        assert_error("a in b", 1, "unknown name `a`");
        assert_error("1 == 2 == 3", 8, "comparisons do not chain");
        assert_error("claims.a < 1 < 2", 14, "comparisons do not chain");
        assert_error("claims.x not contains 1", 10, "expected `not in`");
        assert_error("1.2.3 == 1", 1, "`1.2.3` is not a number");
        assert_error("01 == 1", 1, "`01` is not a number");
        assert_error(r#"claims.a matches gold"#, 18, "followed by a quoted regular expression");
        assert_error(r#"claims.a matches "a(""#, 18, "invalid regular expression");
        assert_error(r#"claims.a matches "a)|(b""#, 18, "invalid regular expression");
        assert_error(r#""x" == "\u{zz}""#, 9, "1 to 6 hex digits");
        assert_error(r#""\u{d800}" == 1"#, 2, "is not a character");
        assert_error("1 exists", 3, "`exists` follows a value");
        assert_error("claims.a < null", 12, "null compares only with `==` and `!=`");
        assert_error("null in [a]", 1, "null compares only");
        assert_error("claims.a ~ 1", 10, "unexpected `~`");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_error(r#""été" == gold"#, 10, "unknown name `gold`");
    }

    #[test]
    fn a_bare_negation_before_a_comparison_is_refused() {
        assert_error(r#"!claims.plan == "gold""#, 1, "`!` binds tighter than `==`");
        assert_error("true && !claims.email exists", 9, "`!` binds tighter than `exists`");
        assert_error("!claims.plan in [gold]", 1, "binds tighter than `in`");
        assert!(holds(r#"!(claims.plan == "silver")"#));
    }

    #[test]
    fn very_long_and_very_deep_rules_are_refused_gracefully() {
        let long = format!("claims.a == \"{}\"", "x".repeat(MAX_RULE_LEN));
        assert_error(&long, MAX_RULE_LEN + 1, "longer than 4096 bytes");
        let long_multibyte = "é".repeat(MAX_RULE_LEN);
        assert_eq!(error(&long_multibyte).column, MAX_RULE_LEN / 2 + 1);
        let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        assert!(error(&deep).message.contains("nested too deeply"));
        assert!(error(&"!".repeat(1000)).message.contains("nested too deeply"));
        let ok_depth = format!("{}true{}", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
        assert!(holds(&ok_depth));
        // Long but flat: many `&&` are a list, not a recursion.
        let flat = vec!["true"; 500].join(" && ");
        assert!(flat.len() <= MAX_RULE_LEN && holds(&flat));
        let regex_bomb = r#"claims.a matches "(\w{100}){100}""#;
        assert!(error(regex_bomb).message.contains("invalid regular expression"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap stand-in for the fuzz target in unit tests: every prefix of a mix of valid and hostile rules.
        let samples = [
            r#"claims.plan in [gold, silver] && !(identity.roles contains "banned") || header.x-a matches "a\d+""#,
            "((((!claims.a.b[0][\"x\"] exists)))) && query.q != 'é\\u{1F600}' && client_ip < 5e300",
            "[,] ] [ \" ' \\ \u{0} \u{ffff} !!== <= >= not in not contains -- 1e 0x1 -",
        ];
        for sample in samples {
            for (i, _) in sample.char_indices() {
                if let Ok(rule) = parse_rule(&sample[..i]) {
                    let _ = rule.evaluate(&Req::get("/?q=1").input());
                }
            }
        }
    }
}

mod authorizer {
    use super::*;

    fn compile(config: serde_json::Value) -> Authorizer {
        let config: AuthorizeConfig = serde_json::from_value(config).unwrap();
        Authorizer::compile("orders", &config, &OpaStates::default()).unwrap()
    }

    fn issues(config: serde_json::Value) -> Vec<ConfigIssue> {
        let config: AuthorizeConfig = serde_json::from_value(config).unwrap();
        match Authorizer::compile("orders", &config, &OpaStates::default()) {
            Ok(_) => panic!("compiled"),
            Err(issues) => issues,
        }
    }

    async fn check(authz: &Authorizer, req: &Req) -> Result<(), AuthzFailure> {
        authz.authorize(&req.input()).await
    }

    #[tokio::test]
    async fn roles_need_any_one_of_them() {
        let authz = compile(json!({"roles": ["admin", "ops"]}));
        assert_eq!(check(&authz, &Req::get("/").identity(with_roles(&["ops"], &[]))).await, Ok(()));
        assert_eq!(check(&authz, &Req::get("/").identity(with_roles(&["admin", "x"], &[]))).await, Ok(()));
        assert_eq!(
            check(&authz, &Req::get("/").identity(with_roles(&["reader"], &[]))).await,
            Err(AuthzFailure::Forbidden("missing role"))
        );
        assert!(check(&authz, &Req::get("/").identity(with_roles(&[], &[]))).await.is_err());
    }

    #[tokio::test]
    async fn scopes_need_all_of_them() {
        let authz = compile(json!({"scopes": ["orders:read", "orders:write"]}));
        let both = with_roles(&[], &["orders:write", "orders:read", "x"]);
        assert_eq!(check(&authz, &Req::get("/").identity(both)).await, Ok(()));
        let one = with_roles(&[], &["orders:read"]);
        assert_eq!(check(&authz, &Req::get("/").identity(one)).await, Err(AuthzFailure::Forbidden("missing scope")));
    }

    #[tokio::test]
    async fn rules_must_all_hold() {
        let authz = compile(json!({"rules": ["claims.tenant == header.x-tenant", "claims.plan in [gold, silver]"]}));
        assert_eq!(check(&authz, &Req::get("/").header("x-tenant", "t-42")).await, Ok(()));
        assert_eq!(
            check(&authz, &Req::get("/").header("x-tenant", "t-1")).await,
            Err(AuthzFailure::Forbidden("rule does not hold"))
        );
    }

    #[tokio::test]
    async fn roles_scopes_and_rules_all_apply_together() {
        let authz = compile(json!({"roles": ["reader"], "scopes": ["profile"], "rules": ["claims.admin"]}));
        assert_eq!(check(&authz, &Req::get("/")).await, Ok(()));
        let no_scope = with_roles(&["reader"], &[]);
        assert!(check(&authz, &Req::get("/").identity(no_scope)).await.is_err());
    }

    #[tokio::test]
    async fn without_an_identity_a_failed_requirement_is_unauthenticated() {
        for config in [
            json!({"roles": ["reader"]}),
            json!({"scopes": ["profile"]}),
            json!({"rules": ["claims.sub exists"]}),
            json!({"rules": ["header.x-env == \"prod\""]}),
        ] {
            let authz = compile(config.clone());
            assert_eq!(check(&authz, &Req::get("/").anonymous()).await, Err(AuthzFailure::Unauthenticated), "{config}");
        }
        let rule_without_identity = compile(json!({"rules": ["identity.subject == null"]}));
        assert_eq!(
            check(&rule_without_identity, &Req::get("/").anonymous()).await,
            Ok(()),
            "a rule may allow anonymous"
        );
    }

    #[tokio::test]
    async fn no_requirements_allow_everyone() {
        let authz = compile(json!({}));
        assert_eq!(check(&authz, &Req::get("/").anonymous()).await, Ok(()));
    }

    #[tokio::test]
    async fn a_listed_method_replaces_the_route_level_requirements() {
        let authz = compile(json!({
            "roles": ["reader"],
            "rules": ["claims.tenant == header.x-tenant"],
            "methods": {
                "POST": {"roles": ["writer"]},
                "DELETE": {"roles": ["admin"], "rules": ["claims.admin"]},
                "OPTIONS": {}
            }
        }));
        let reader = || Req::get("/").identity(with_roles(&["reader"], &[]));
        let writer = || Req::get("/").identity(with_roles(&["writer"], &[]));
        assert_eq!(check(&authz, &reader().header("x-tenant", "t-42")).await, Ok(()));
        assert_eq!(
            check(&authz, &reader().header("x-tenant", "t-1")).await,
            Err(AuthzFailure::Forbidden("rule does not hold"))
        );
        assert_eq!(
            check(&authz, &writer().header("x-tenant", "t-42")).await,
            Err(AuthzFailure::Forbidden("missing role"))
        );
        // POST: only `writer`, and the route-level tenant rule no longer applies.
        assert_eq!(check(&authz, &writer().method(Method::POST)).await, Ok(()));
        assert_eq!(
            check(&authz, &reader().method(Method::POST).header("x-tenant", "t-42")).await,
            Err(AuthzFailure::Forbidden("missing role"))
        );
        let admin = Req::get("/").identity(with_roles(&["admin"], &[])).method(Method::DELETE);
        assert_eq!(check(&authz, &admin).await, Ok(()));
        assert_eq!(check(&authz, &Req::get("/").method(Method::OPTIONS).anonymous()).await, Ok(()), "{{}}: open");
        assert_eq!(
            check(&authz, &Req::get("/").method(Method::HEAD).anonymous()).await,
            Err(AuthzFailure::Unauthenticated)
        );
    }

    #[test]
    fn config_issues_name_the_field_relative_to_the_block() {
        let found = issues(json!({
            "roles": ["ok", " "],
            "scopes": ["orders:read orders:write"],
            "rules": ["claims.a == 1", "claims.a = 1"],
            "methods": {
                "POST": {"roles": [""], "rules": ["(("]},
                "post": {},
                "BAD METHOD": {},
            },
            "opa": {"url": "ftp://opa", "timeout": "0s", "include_headers": ["x-tenant", "Authorization", "bad header"]}
        }));
        let paths: Vec<_> = found.iter().map(|i| i.path.as_str()).collect();
        for expected in [
            "roles[1]",
            "scopes[0]",
            "rules[1]",
            "methods.POST.roles[0]",
            "methods.POST.rules[0]",
            "methods.post",
            "methods.BAD METHOD",
            "opa.url",
            "opa.timeout",
            "opa.include_headers[1]",
            "opa.include_headers[2]",
        ] {
            assert!(paths.contains(&expected), "{expected} missing in {found:#?}");
        }
        assert_eq!(found.len(), 11, "{found:#?}");
        let rule = found.iter().find(|i| i.path == "rules[1]").unwrap();
        assert_eq!(rule.message, "column 10: use `==` to compare");
        let lower = found.iter().find(|i| i.path == "methods.post").unwrap();
        assert!(lower.message.contains("`POST`"), "{lower:?}");
    }

    #[test]
    fn the_documented_yaml_shape_deserializes_and_unknown_fields_are_refused() {
        let config: AuthorizeConfig = serde_json::from_value(json!({
            "roles": ["admin", "ops"],
            "scopes": ["orders:read"],
            "rules": ["claims.tenant == header.x-tenant"],
            "opa": {"url": "http://127.0.0.1:8181/v1/data/turnpike/allow", "timeout": "500ms", "cache_ttl": "5s",
                    "include_headers": ["x-tenant"]},
            "methods": {"POST": {"roles": ["writer"]}}
        }))
        .unwrap();
        assert_eq!(config.opa.as_ref().unwrap().timeout, turnpike_config::Duration::from_millis(500));
        let defaults: OpaConfig = serde_json::from_value(json!({"url": "http://opa/v1/data/x"})).unwrap();
        assert_eq!(defaults.timeout, turnpike_config::Duration::from_millis(500));
        assert_eq!(defaults.cache_ttl, turnpike_config::Duration::from_secs(5));
        assert!(serde_json::from_value::<AuthorizeConfig>(json!({"role": ["a"]})).is_err());
        assert!(serde_json::from_value::<AuthorizeConfig>(json!({"methods": {"GET": {"method": 1}}})).is_err());
        assert!(serde_json::from_value::<OpaConfig>(json!({"url": "http://x", "ttl": "1s"})).is_err());
        let schema = schemars::schema_for!(AuthorizeConfig);
        assert!(schema.as_value().to_string().contains("include_headers"));
    }
}

mod opa {
    //! A real OPA Data API on loopback: `POST /v1/data/<path>` evaluates `data.<path>` of a Rego policy with the
    //! `regorus` interpreter; `/slow/...` answers after 2 s, `/fail/...` with 500, `/garbage/...` with non-JSON,
    //! `/string/...` with `{"result": "yes"}`.

    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use tokio::net::TcpListener;

    use super::*;

    const POLICY: &str = r#"package turnpike

default allow := false

allow if {
    input.method == "GET"
    input.identity.claims.tenant == input.headers["x-tenant"]
}

allow if {
    "admin" in input.identity.roles
}

anonymous_get if {
    input.method == "GET"
    input.identity == null
}

# No default: undefined unless the path is /defined.
only_defined if {
    input.path == "/defined"
}

decision := {"allow": allow}

no_allow := {"reason": "the rule `allow` is missing from this object"}
"#;

    struct OpaServer {
        addr: SocketAddr,
        calls: Arc<AtomicUsize>,
        inputs: Arc<Mutex<Vec<Value>>>,
    }

    impl OpaServer {
        async fn start() -> OpaServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            let inputs = Arc::new(Mutex::new(Vec::new()));
            let (c, i) = (calls.clone(), inputs.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    let (c, i) = (c.clone(), i.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (c, i) = (c.clone(), i.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                c.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, hyper::Error>(answer(&path, &body, &i).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            OpaServer { addr, calls, inputs }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn last_input(&self) -> Value {
            self.inputs.lock().unwrap().last().cloned().unwrap()
        }
    }

    async fn answer(path: &str, body: &[u8], inputs: &Mutex<Vec<Value>>) -> http::Response<Full<Bytes>> {
        let respond = |status: u16, body: String| {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::from(body))
                .unwrap()
        };
        let request: Value = serde_json::from_slice(body).unwrap();
        let input = request["input"].clone();
        inputs.lock().unwrap().push(input.clone());
        let rule_path = if let Some(rest) = path.strip_prefix("/slow") {
            tokio::time::sleep(Duration::from_secs(2)).await;
            rest
        } else if path.starts_with("/fail") {
            return respond(500, r#"{"code": "internal_error"}"#.into());
        } else if path.starts_with("/garbage") {
            return respond(200, "<html>not json".into());
        } else if path.starts_with("/string") {
            return respond(200, r#"{"result": "yes"}"#.into());
        } else {
            path
        };
        let Some(rule) = rule_path.strip_prefix("/v1/data/") else {
            return respond(404, "{}".into());
        };
        let mut engine = regorus::Engine::new();
        engine.add_policy("turnpike.rego".into(), POLICY.into()).unwrap();
        engine.set_input(regorus::Value::from_json_str(&input.to_string()).unwrap());
        // An unknown package or rule is undefined, as in OPA.
        let result = engine.eval_rule(format!("data.{}", rule.replace('/', "."))).unwrap_or(regorus::Value::Undefined);
        if result == regorus::Value::Undefined {
            // OPA's answer for an undefined decision: no `result`.
            respond(200, "{}".into())
        } else {
            respond(200, format!(r#"{{"result": {}}}"#, result.to_json_str().unwrap()))
        }
    }

    fn authorizer(opa: Value, states: &OpaStates) -> Authorizer {
        let config: AuthorizeConfig = serde_json::from_value(json!({ "opa": opa })).unwrap();
        Authorizer::compile("orders", &config, states).unwrap()
    }

    #[tokio::test]
    async fn allow_and_deny_come_from_the_rego_policy() {
        let opa = OpaServer::start().await;
        let states = OpaStates::default();
        let authz =
            authorizer(json!({"url": opa.url("/v1/data/turnpike/allow"), "include_headers": ["x-tenant"]}), &states);
        let tenant = Req::get("/orders").header("x-tenant", "t-42");
        assert_eq!(authz.authorize(&tenant.input()).await, Ok(()));
        let other = Req::get("/orders").header("x-tenant", "t-1");
        assert_eq!(authz.authorize(&other.input()).await, Err(AuthzFailure::Forbidden("denied by opa")));
        let admin = Req::get("/orders").method(Method::DELETE).identity(with_roles(&["admin"], &[]));
        assert_eq!(authz.authorize(&admin.input()).await, Ok(()));
        let anonymous = Req::get("/orders").header("x-tenant", "t-42").anonymous();
        assert_eq!(authz.authorize(&anonymous.input()).await, Err(AuthzFailure::Unauthenticated), "no identity: 401");
        assert_eq!(opa.calls(), 4);
    }

    #[tokio::test]
    async fn opa_may_allow_an_anonymous_request() {
        let opa = OpaServer::start().await;
        let authz = authorizer(json!({"url": opa.url("/v1/data/turnpike/anonymous_get")}), &OpaStates::default());
        assert_eq!(authz.authorize(&Req::get("/public").anonymous().input()).await, Ok(()));
        assert_eq!(opa.last_input()["identity"], Value::Null);
    }

    #[tokio::test]
    async fn an_undefined_decision_denies() {
        let opa = OpaServer::start().await;
        let authz = authorizer(json!({"url": opa.url("/v1/data/turnpike/only_defined")}), &OpaStates::default());
        assert_eq!(authz.authorize(&Req::get("/defined").input()).await, Ok(()));
        assert_eq!(authz.authorize(&Req::get("/other").input()).await, Err(AuthzFailure::Forbidden("denied by opa")));
        let missing_package = authorizer(json!({"url": opa.url("/v1/data/nothing/here")}), &OpaStates::default());
        assert_eq!(
            missing_package.authorize(&Req::get("/").input()).await,
            Err(AuthzFailure::Forbidden("denied by opa"))
        );
    }

    #[tokio::test]
    async fn an_object_result_is_read_by_its_allow_field() {
        let opa = OpaServer::start().await;
        let states = OpaStates::default();
        let authz =
            authorizer(json!({"url": opa.url("/v1/data/turnpike/decision"), "include_headers": ["x-tenant"]}), &states);
        assert_eq!(authz.authorize(&Req::get("/").header("x-tenant", "t-42").input()).await, Ok(()));
        assert_eq!(
            authz.authorize(&Req::get("/").header("x-tenant", "t-0").input()).await,
            Err(AuthzFailure::Forbidden("denied by opa"))
        );
        let no_allow = authorizer(json!({"url": opa.url("/v1/data/turnpike/no_allow")}), &states);
        assert_eq!(no_allow.authorize(&Req::get("/").input()).await, Err(AuthzFailure::Forbidden("denied by opa")));
    }

    #[tokio::test]
    async fn decisions_are_cached_allow_and_deny_alike() {
        let opa = OpaServer::start().await;
        let states = OpaStates::default();
        let authz =
            authorizer(json!({"url": opa.url("/v1/data/turnpike/allow"), "include_headers": ["x-tenant"]}), &states);
        let allowed = Req::get("/orders").header("x-tenant", "t-42");
        let denied = Req::get("/orders").header("x-tenant", "t-1");
        for _ in 0..3 {
            assert_eq!(authz.authorize(&allowed.input()).await, Ok(()));
            assert!(authz.authorize(&denied.input()).await.is_err());
        }
        assert_eq!(opa.calls(), 2, "one call per distinct input");
        // A header that is not sent to OPA is not part of the key.
        let with_noise = Req::get("/orders").header("x-tenant", "t-42").header("x-request-id", "r-1");
        assert_eq!(authz.authorize(&with_noise.input()).await, Ok(()));
        assert_eq!(opa.calls(), 2);
        // A different path is a different input.
        assert_eq!(authz.authorize(&Req::get("/orders/1").header("x-tenant", "t-42").input()).await, Ok(()));
        assert_eq!(opa.calls(), 3);
        let state = states.get(&format!("orders\n{}", opa.url("/v1/data/turnpike/allow"))).unwrap();
        assert_eq!(state.cached_decisions(), 3);
    }

    #[tokio::test]
    async fn cached_decisions_expire_after_the_ttl() {
        let opa = OpaServer::start().await;
        let authz = authorizer(
            json!({"url": opa.url("/v1/data/turnpike/allow"), "cache_ttl": "300ms", "include_headers": ["x-tenant"]}),
            &OpaStates::default(),
        );
        let req = Req::get("/orders").header("x-tenant", "t-42");
        assert_eq!(authz.authorize(&req.input()).await, Ok(()));
        assert_eq!(authz.authorize(&req.input()).await, Ok(()));
        assert_eq!(opa.calls(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(authz.authorize(&req.input()).await, Ok(()));
        assert_eq!(opa.calls(), 2, "asked again after the ttl");
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time() {
        let opa = OpaServer::start().await;
        let authz =
            authorizer(json!({"url": opa.url("/v1/data/turnpike/allow"), "cache_ttl": "0s"}), &OpaStates::default());
        let admin = Req::get("/").identity(with_roles(&["admin"], &[]));
        for _ in 0..3 {
            assert_eq!(authz.authorize(&admin.input()).await, Ok(()));
        }
        assert_eq!(opa.calls(), 3);
    }

    #[tokio::test]
    async fn a_reload_keeps_the_decision_cache() {
        let opa = OpaServer::start().await;
        let states = OpaStates::default();
        let opa_config = json!({"url": opa.url("/v1/data/turnpike/allow")});
        let old = authorizer(opa_config.clone(), &states);
        let admin = Req::get("/").identity(with_roles(&["admin"], &[]));
        assert_eq!(old.authorize(&admin.input()).await, Ok(()));
        let new = authorizer(opa_config, &states);
        drop(old);
        assert_eq!(new.authorize(&admin.input()).await, Ok(()));
        assert_eq!(opa.calls(), 1, "the new snapshot reused the old one's decision");
    }

    #[tokio::test]
    async fn a_slow_opa_fails_closed_within_the_timeout() {
        let opa = OpaServer::start().await;
        let authz = authorizer(
            json!({"url": opa.url("/slow/v1/data/turnpike/allow"), "timeout": "200ms"}),
            &OpaStates::default(),
        );
        let admin = Req::get("/").identity(with_roles(&["admin"], &[]));
        let started = tokio::time::Instant::now();
        assert_eq!(authz.authorize(&admin.input()).await, Err(AuthzFailure::Unavailable));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1200), "{took:?}");
        // A failure is not cached: the next request asks again.
        assert_eq!(authz.authorize(&admin.input()).await, Err(AuthzFailure::Unavailable));
        assert_eq!(opa.calls(), 2);
    }

    #[tokio::test]
    async fn errors_and_broken_answers_fail_closed() {
        let opa = OpaServer::start().await;
        let states = OpaStates::default();
        for path in ["/fail/v1/data/turnpike/allow", "/garbage/v1/data/turnpike/allow", "/string/v1/data/x", "/nope"] {
            let authz = authorizer(json!({"url": opa.url(path)}), &states);
            assert_eq!(authz.authorize(&Req::get("/").input()).await, Err(AuthzFailure::Unavailable), "{path}");
            assert_eq!(authz.authorize(&Req::get("/").anonymous().input()).await, Err(AuthzFailure::Unavailable));
        }
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let down = authorizer(json!({"url": format!("http://127.0.0.1:{closed_port}/v1/data/x")}), &states);
        assert_eq!(down.authorize(&Req::get("/").input()).await, Err(AuthzFailure::Unavailable));
    }

    #[tokio::test]
    async fn local_requirements_are_checked_before_opa() {
        let opa = OpaServer::start().await;
        let config: AuthorizeConfig = serde_json::from_value(json!({
            "roles": ["admin"],
            "opa": {"url": opa.url("/v1/data/turnpike/allow")},
            "methods": {"POST": {"opa": {"url": opa.url("/v1/data/turnpike/only_defined")}}}
        }))
        .unwrap();
        let authz = Authorizer::compile("orders", &config, &OpaStates::default()).unwrap();
        let reader = Req::get("/").identity(with_roles(&["reader"], &[]));
        assert_eq!(authz.authorize(&reader.input()).await, Err(AuthzFailure::Forbidden("missing role")));
        assert_eq!(opa.calls(), 0, "OPA is not asked when a local requirement fails");
        let admin = Req::get("/").identity(with_roles(&["admin"], &[]));
        assert_eq!(authz.authorize(&admin.input()).await, Ok(()));
        assert_eq!(opa.calls(), 1);
        // POST has its own requirements: no role, and its own OPA rule.
        assert_eq!(
            authz.authorize(&Req::get("/defined").method(Method::POST).identity(with_roles(&[], &[])).input()).await,
            Ok(())
        );
        assert_eq!(opa.calls(), 2);
    }

    #[tokio::test]
    async fn the_input_document_carries_the_request_and_identity_but_no_credentials() {
        let opa = OpaServer::start().await;
        let authz = authorizer(
            json!({"url": opa.url("/v1/data/turnpike/allow"), "include_headers": ["X-Tenant", "accept"]}),
            &OpaStates::default(),
        );
        let req = Req::get("/orders/7?q=a+b&q=c&x=%C3%A9")
            .method(Method::PUT)
            .header("x-tenant", "t-42")
            .header("accept", "text/html")
            .header("accept", "application/json")
            .header("authorization", "Bearer secret-token")
            .header("cookie", "session=secret")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("x-other", "not included");
        let _ = authz.authorize(&req.input()).await;
        let input = opa.last_input();
        assert_eq!(
            input,
            json!({
                "method": "PUT",
                "path": "/orders/7",
                "query": {"q": ["a b", "c"], "x": ["é"]},
                "headers": {"x-tenant": "t-42", "accept": "text/html, application/json"},
                "client_ip": "192.0.2.7",
                "route": "orders",
                "identity": {
                    "source": "jwt",
                    "subject": "u-1",
                    "consumer": "acme",
                    "plan": "gold",
                    "roles": ["reader", "ops"],
                    "scopes": ["orders:read", "profile"],
                    "claims": Value::Object((*user().claims.unwrap()).clone()),
                }
            })
        );
        assert!(!input.to_string().contains("secret"), "no credential reaches OPA");
    }

    #[test]
    fn the_cache_key_ignores_object_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": "s"}});
        let mut reordered = serde_json::Map::new();
        reordered.insert("a".into(), json!({"x": "s", "y": [1, {"p": 3, "q": 2}]}));
        reordered.insert("b".into(), json!(1));
        assert_eq!(crate::authz::opa::cache_key(&a), crate::authz::opa::cache_key(&Value::Object(reordered)));
        assert_ne!(crate::authz::opa::cache_key(&a), crate::authz::opa::cache_key(&json!({"b": 2})));
    }

    #[test]
    fn the_decision_forms() {
        use crate::authz::opa::decision;
        assert_eq!(decision(&json!({"result": true})), Ok(true));
        assert_eq!(decision(&json!({"result": false})), Ok(false));
        assert_eq!(decision(&json!({})), Ok(false), "undefined denies");
        assert_eq!(decision(&json!({"result": {"allow": true, "reason": "x"}})), Ok(true));
        assert_eq!(decision(&json!({"result": {"reason": "x"}})), Ok(false));
        assert!(decision(&json!({"result": "true"})).is_err());
        assert!(decision(&json!({"result": {"allow": 1}})).is_err());
        assert!(decision(&json!([true])).is_err());
    }
}
