//! What the documentation tests share to read Markdown: the parser set up
//! as GitHub renders the files (tables on), and the line a byte offset of
//! the source falls on, so that every finding points at the text.

use pulldown_cmark::{Options, Parser};

/// A parser of `text` with the extensions GitHub renders our files with.
/// Tables matter: without them a row is one paragraph, and a `|` inside a
/// code span of a cell would end the span as GitHub never does.
pub fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(text, Options::ENABLE_TABLES)
}

/// Maps byte offsets of one text to 1-based line numbers.
pub struct LineIndex {
    /// Byte offset at which each line starts, in order.
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the lines of `text`.
    pub fn new(text: &str) -> Self {
        let breaks = text.match_indices('\n').map(|(at, _)| at + 1);
        LineIndex {
            starts: std::iter::once(0).chain(breaks).collect(),
        }
    }

    /// The 1-based line that byte `offset` is on.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }
}

#[test]
fn line_index_counts_from_one_and_puts_a_newline_on_its_line() {
    let index = LineIndex::new("ab\ncd\n\nef");
    let lines: Vec<usize> = [0, 2, 3, 5, 6, 7, 8].map(|at| index.line(at)).into();
    assert_eq!(lines, [1, 1, 2, 2, 3, 4, 4]);
}
