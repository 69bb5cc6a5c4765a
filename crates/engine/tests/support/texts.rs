//! Texts for the tokenizer parity tests: digits, whitespace runs, code,
//! punctuation, accents, CJK, emoji and the special tokens of several
//! chat formats.

/// Several hundred strings: each seed alone, beside others, with digits
/// and whitespace runs, and numbers.
pub fn corpus() -> Vec<String> {
    let seeds = [
        "Hello world",
        "hello  world",
        "   leading spaces",
        "trailing spaces   ",
        "tabs\tand\tnewlines\n\n",
        "\n",
        " ",
        "  ",
        "\t\t",
        "\r\n",
        "a\u{a0}b",
        "12345",
        "3.14159",
        "1,000,000",
        "-42",
        "2024-01-01T12:00:00Z",
        "0x1F600",
        "v1.2.3-beta",
        "I'm here, you're there, they'll see",
        "Don't WON'T can't",
        "'s 't 're 've 'm 'll 'd",
        "fn main() { println!(\"{}\", 1 + 2); }",
        "def f(x):\n    return x ** 2\n",
        "if (a && b || !c) { x += 1; }",
        "<div class=\"x\">Hi</div>",
        "SELECT * FROM t WHERE id = 7;",
        "#include <stdio.h>",
        "λx. x + 1",
        "!!!???...",
        "@user #tag $100 %20 ^_^ &amp; *bold* (paren) [bracket] {brace}",
        "~/.config/app.toml",
        "naïve café résumé coöperate façade",
        "Ångström Ærøskøbing São Paulo",
        "Straße Größe Übung",
        "日本語のテキスト",
        "中文分词测试",
        "한국어 문장입니다",
        "Привет, мир!",
        "Γειά σου Κόσμε",
        "مرحبا بالعالم",
        "שלום עולם",
        "हिन्दी पाठ",
        "ไทย ภาษา",
        "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷",
        "🦙🦙🦙 llamas",
        "✓ ✗ → ← ★ ☆ ♥",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>",
        "text<|im_end|>more",
        "<|im_start|><|im_start|>",
        "<repo_name>foo<file_sep>bar",
        "< |im_start| >",
        "<|im_star",
        "Write a 500 word long story about llamas",
        "ALL CAPS SENTENCE",
        "MiXeD CaSe WoRdS",
        "snake_case_identifier",
        "camelCaseIdentifier",
        "kebab-case-word",
        "http://example.com/path?query=1&b=2#frag",
        "user@example.com",
        "C:\\Windows\\System32",
        "a\u{300}e\u{301}",
        "\u{200b}zero\u{200b}width",
        "multiple\n\n\nnewlines\n\n",
        "   \n   \n",
        "x\u{3000}y",
        "①②③ Ⅳ ½ ¾",
        "",
        "Tiếng Việt có dấu: Xin chào các bạn",
        "<s> </s> [INST] hi [/INST]",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|user|>\nHi <|end|>\n<|assistant|>",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ];
    let mut out: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    // Combinations: each seed next to others, with digits and whitespace runs.
    for (i, a) in seeds.iter().enumerate() {
        let b = seeds[(i * 7 + 3) % seeds.len()];
        out.push(format!("{a} {b}"));
        out.push(format!("{a}{}{b}", " ".repeat(i % 5 + 1)));
        out.push(format!("{i}{a}{}", i * 37));
        out.push(format!("{a}\n{}", "\t".repeat(i % 3)));
    }
    for n in [0u64, 7, 42, 123, 1000, 99999, 1234567890, u64::MAX] {
        out.push(n.to_string());
        out.push(format!("x{n}y"));
    }
    out
}
