//! Chat templates come from model files: hostile ones end in an error that names the limit they
//! reached — never a stack overflow, a hang or a giant prompt. (The real templates render
//! exactly and far inside the limits: tests/chat_templates.rs, which reads them from the
//! fetched GGUF fixtures.) Each hostile template here
//! aborted, ran forever or allocated without bound before the limits. The tests live in `mod
//! chat`, so `cargo test -p tlite-text chat` runs them.

mod chat {
    use std::time::{Duration, Instant};

    use tlite_text::chat::{
        ChatTemplate, FUEL_LIMIT, MAX_ELIFS, MAX_NESTING, MAX_OUTPUT_BYTES, MAX_TAG_TOKENS,
        MAX_TEMPLATE_BYTES, RenderLimits, conversation,
    };

    fn inline(source: impl Into<String>) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        }
    }

    /// The error of rendering `source`, checked to name `limit` and not to mention a panic.
    fn refused(source: impl Into<String>, limit: &str) -> String {
        refused_within(source, limit, &RenderLimits::DEFAULT)
    }

    fn refused_within(source: impl Into<String>, limit: &str, limits: &RenderLimits) -> String {
        let t = inline(source);
        let e = match t.render_limited(&conversation(None, "hi"), true, limits) {
            Ok(r) => panic!("rendered {} bytes; expected the {limit}", r.text.len()),
            Err(e) => e.to_string(),
        };
        eprintln!("refused: {e}");
        assert!(e.contains(limit), "expected the {limit}: {e}");
        assert!(e.starts_with("chat template: "), "{e}");
        assert!(!e.contains("panicked"), "{e}");
        e
    }

    const DEEP_NAMESPACE_LIST: &str = "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}\
    {% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}";

    #[test]
    fn a_list_nested_in_a_namespace_stops_at_the_nesting_limit() {
        let e = refused(DEEP_NAMESPACE_LIST, "(nesting limit)");
        assert!(
            e.contains(&format!("nested deeper than {MAX_NESTING} levels")),
            "{e}"
        );
        // The same through a dict and through `tojson`.
        refused(
            "{% set ns = namespace(x=0) %}{% for i in range(100000) %}\
         {% set ns.x = {'a': ns.x} %}{% endfor %}{{ ns.x|tojson }}",
            "(nesting limit)",
        );
    }

    /// `{% set x = [[…[x]…]] %}` `statements` times, `per` brackets each: a value about
    /// `statements × per` deep built without a namespace (no check runs on a plain `set`).
    fn straight_line_deep(name: &str, statements: usize, per: usize) -> String {
        let stmt = format!(
            "{{% set {name} = {}{name}{} %}}",
            "[".repeat(per),
            "]".repeat(per)
        );
        format!("{{% set {name} = 0 %}}{}", stmt.repeat(statements))
    }

    #[test]
    fn a_deep_value_is_refused_when_printed_serialized_or_pretty_printed() {
        let deep = straight_line_deep("x", 100, 10);
        for use_it in [
            "{{ x }}",
            "{{ x|tojson }}",
            "{{ x|pprint }}",
            "{{ [x]|tojson(indent=2) }}",
        ] {
            refused(format!("{deep}{use_it}"), "(nesting limit)");
        }
    }

    #[test]
    fn values_as_deep_as_the_fuel_allows_are_compared_stringified_and_dropped() {
        // Comparison, `string` and dropping recurse once per level without a check: the render
        // thread's stack holds what the fuel lets a template build (about one level per step).
        let per = 10;
        let statements = (FUEL_LIMIT as usize) / (per + 2) / 2 - 100;
        let src = format!(
            "{}{}{{{{ x == y }}}} {{{{ x|string|length }}}}",
            straight_line_deep("x", statements, per),
            straight_line_deep("y", statements, per)
        );
        let r = inline(src)
            .render_limited(&conversation(None, "hi"), true, &RenderLimits::DEFAULT)
            .unwrap();
        let depth = statements * per;
        assert_eq!(r.text, format!("True {}", 2 * depth + 1), "depth {depth}");
        assert!(r.fuel_used > FUEL_LIMIT * 9 / 10, "{}", r.fuel_used);
    }

    #[test]
    fn a_namespace_cannot_hold_itself() {
        // Printing, comparing or serializing a namespace that holds itself recursed without end.
        for src in [
            "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.l = [1, {'a': ns}] %}{{ ns|tojson }}",
            "{% set ns = namespace() %}{% set n2 = namespace(inner=ns) %}{% set ns.x, ns.y = 1, n2 %}{{ ns == n2 }}",
        ] {
            refused(src, "(namespace rule)");
        }
        // Plain values still go in.
        let t = inline(
            "{% set ns = namespace(l=[], seen=false) %}{% for m in messages %}\
         {% set ns.l = ns.l + [m] %}{% set ns.seen = true %}{% endfor %}\
         {{ ns.l|length }} {{ ns.seen }} {{ (ns.l|first).content }}",
        );
        assert_eq!(
            t.render(&conversation(Some("s"), "u"), true).unwrap(),
            "2 True s"
        );
    }

    #[test]
    fn nested_range_loops_stop_at_the_fuel_limit() {
        let t0 = Instant::now();
        let e = refused(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}\
         {% endfor %}{% endfor %}{% endfor %}",
            "(fuel limit)",
        );
        assert!(e.contains(&format!("more than {FUEL_LIMIT} steps")), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn huge_output_stops_at_the_output_limit() {
        for src in [
            "{{ 'x' * 100000000 }}",
            "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
            "{% for i in range(1000) %}{% for m in messages %}{{ m.content * 10000 }}{% endfor %}{% endfor %}",
        ] {
            let e = refused(src, "(output limit)");
            assert!(
                e.contains(&format!("exceeds {MAX_OUTPUT_BYTES} bytes")),
                "{e}"
            );
        }
        // A value shared 2^40 times prints or serializes to terabytes: refused before it is built.
        let shared = "{% set x = [0] %}".to_owned() + &"{% set x = [x, x] %}".repeat(40);
        refused(format!("{shared}{{{{ x }}}}"), "(output limit)");
        refused(
            format!("{shared}{{{{ x|tojson|length }}}}"),
            "(output limit)",
        );
        refused("{{ [1, 2]|tojson(indent=1000000000) }}", "(output limit)");
    }

    #[test]
    fn a_string_multiplied_beyond_minijinjas_cap_is_an_error() {
        // minijinja refuses repetitions past 100 MB itself.
        refused("{{ 'x' * 1000000000 }}", "repeated string is too large");
        refused(
            "{{ ('x' * 100000) * 100000 }}",
            "repeated string is too large",
        );
    }

    #[test]
    fn deep_macro_recursion_stops_at_the_recursion_limit() {
        refused(
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "(recursion limit)",
        );
        refused(
            "{% for x in [[0]] recursive %}{{ loop([x]) }}{% endfor %}",
            "(recursion limit)",
        );
    }

    /// `head`, then `link` repeated as often as fits in the template size cap, then `tail`.
    fn chain(head: &str, link: &str, tail: &str) -> String {
        let n = (MAX_TEMPLATE_BYTES - head.len() - tail.len()) / link.len();
        format!("{head}{}{tail}", link.repeat(n))
    }

    #[test]
    fn deeply_nested_source_is_refused_before_it_is_compiled() {
        // Each of these is parsed or compiled with one native frame per link (100–1000 B each): at
        // 100,000 links they overflowed an 8 MiB stack, and a template of the largest size allowed
        // holds up to 500,000. Past MAX_TAG_TOKENS tokens in one tag they are refused unparsed.
        let chains = [
            chain("{{ 1", "+1", " }}"),
            chain("{{ 0", "|abs", " }}"),
            chain("{{ x", ".a", " }}"),
            chain("{{ x", "[0]", " }}"),
            chain("{{ f", "()", " }}"),
            chain("{{ ''", " ~ 'a'", " }}"),
            chain("{{ 1", " if 1 else 1", " }}"),
            chain("{{ ", "not ", "1 }}"),
            chain("{{ ", "-", "1 }}"),
            chain("{{ 2", "**2", " }}"),
            chain("{% set ns.x = 1", "+1", " %}"),
        ];
        for src in chains {
            let e = refused(src, "(expression size limit)");
            assert!(
                e.contains(&format!("more than {MAX_TAG_TOKENS} tokens")),
                "{e}"
            );
        }
        let e = refused(
            chain("{% if 0 %}", "{% elif 0 %}", "{% endif %}"),
            "(elif limit)",
        );
        assert!(e.contains(&format!("more than {MAX_ELIFS}")), "{e}");
        // Brackets and blocks nested in the source: minijinja's parser has its own limit.
        for src in [
            format!("{{{{ {}{} }}}}", "[".repeat(1000), "]".repeat(1000)),
            "{% if 1 %}".repeat(1000) + &"{% endif %}".repeat(1000),
            "{% for i in x %}".repeat(1000) + &"{% endfor %}".repeat(1000),
        ] {
            refused(src, "maximum recursion limits");
        }
        // Just under the caps, the same shapes compile and run.
        let ok = inline(format!(
            "{{{{ {} }}}}{{% if 0 %}}{}{{% endif %}}",
            vec!["1"; MAX_TAG_TOKENS / 2].join("+"),
            "{% elif 0 %}".repeat(MAX_ELIFS)
        ));
        assert_eq!(
            ok.render(&[], false).unwrap(),
            (MAX_TAG_TOKENS / 2).to_string()
        );
    }

    #[test]
    fn a_template_past_the_size_cap_is_refused() {
        let e = refused("x".repeat(MAX_TEMPLATE_BYTES + 1), "(template size limit)");
        assert!(e.contains(&MAX_TEMPLATE_BYTES.to_string()), "{e}");
    }

    #[test]
    fn rechecking_a_big_namespace_value_stops_at_the_check_limit() {
        refused(
            "{% set ns = namespace(l=range(100000)|list) %}{% for i in range(200) %}\
         {% set ns.l = ns.l %}{% endfor %}",
            "(check limit)",
        );
    }

    #[test]
    fn an_operation_that_fuel_does_not_pay_for_stops_at_the_time_limit() {
        // Two values sharing their structure 2^27 ways: `==` walks every path in one instruction.
        let build = |v: &str| {
            format!(
                "{{% set {v} = [0] %}}{}",
                format!("{{% set {v} = [{v}, {v}] %}}").repeat(27)
            )
        };
        let limits = RenderLimits {
            time_limit: Duration::from_millis(50),
            ..RenderLimits::DEFAULT
        };
        let t0 = Instant::now();
        let e = refused_within(
            format!("{}{}{{{{ x == y }}}}", build("x"), build("y")),
            "(time limit)",
            &limits,
        );
        assert!(e.contains("longer than 0.050 s"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
}
