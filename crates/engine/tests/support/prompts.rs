//! The prompts the parity tests send to both engines.

/// Plain-text prompts.
pub const PLAIN: &[&str] = &[
    "The capital of France is",
    "Write a 500 word long story about llamas",
    "def fibonacci(n):\n    ",
    "1, 2, 3, 4, 5,",
    "Once upon a time, in a land far away,",
    "The quick brown fox",
    // One token: llama.cpp takes its single-row (vec_dot) path for a prompt.
    "Hello",
    // Special tokens typed into a plain prompt.
    "<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n",
    "SELECT name FROM users WHERE",
];

/// User messages, sent through the model's chat template.
pub const CHAT: &[&str] = &[
    "What is the capital of France?",
    "Write a 500 word long story about llamas",
    "Give me three tips for staying healthy.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Explain photosynthesis to a ten year old.",
    "Why do cats purr?",
];

/// A prompt past 256 tokens: llama.cpp pads the attended cache to 256 slots,
/// so this one attends over 512, with another f16 dot length and more
/// masked positions in its softmax.
pub fn past_256() -> String {
    let paragraph = "In the early days of computing, programmers wrote software directly in \
        machine code, carefully arranging instructions and data in memory. Over time, \
        assemblers, compilers and operating systems made this work easier, and languages \
        such as Fortran, COBOL, Lisp and C changed how people thought about programs. ";
    format!("{}\nIn conclusion,", paragraph.repeat(6))
}

/// A text of about `tokens` tokens that does not repeat itself: numbered
/// sentences about varied subjects, then an open end.
pub fn essay(tokens: usize) -> String {
    const SUBJECTS: [&str; 8] = [
        "the river",
        "a lighthouse keeper",
        "the old library",
        "a mountain village",
        "the night train",
        "a small bakery",
        "the harbour market",
        "a violin maker",
    ];
    const VERBS: [&str; 6] = [
        "remembered",
        "described",
        "changed",
        "protected",
        "questioned",
        "celebrated",
    ];
    let mut text = String::from("Here are some notes from a travel journal.\n");
    let mut i = 0usize;
    // About 23 tokens per sentence with this vocabulary.
    while i * 23 < tokens {
        text.push_str(&format!(
            "Day {}: {} {} the {} season, and {} people came to see it. ",
            i + 1,
            SUBJECTS[i % 8],
            VERBS[(i / 8) % 6],
            ["first", "second", "third", "last", "quiet", "busy", "cold"][(i * 5) % 7],
            (i * 37) % 91 + 3
        ));
        i += 1;
    }
    text.push_str("\nTo summarise the journal,");
    text
}
