//! The owned syntax tree of a `.cnn` file. Every node carries the byte span it came from, so that
//! diagnostics raised long after parsing (shape errors, weight mismatches) still point at source.

/// A half-open byte range into the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The first byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// An integer expression: `2*c`, `(c1 + c3) / 2`. Kept flat (a sum of products of factors) so that
/// evaluating a long chain like `1+1+...+1` needs no recursion; only parentheses nest, and the
/// parser bounds their depth.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub first: Term,
    pub rest: Vec<(AddOp, Term)>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub first: Factor,
    pub rest: Vec<(MulOp, Factor)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Factor {
    Int(i64, Span),
    Var(Ident),
    /// `in.c`, `in.h`, `in.w`: a size of the block instance's input.
    Input(InputDim, Span),
    Paren(Box<Expr>),
}

/// Which size of a block's input `in.?` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputDim {
    C = 0,
    H = 1,
    W = 2,
}

impl InputDim {
    pub fn letter(self) -> char {
        match self {
            InputDim::C => 'c',
            InputDim::H => 'h',
            InputDim::W => 'w',
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// `lhs OP rhs`, or a bare `lhs` (true when not 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub lhs: Expr,
    pub rhs: Option<(CmpOp, Expr)>,
}

/// A disjunction of conjunctions: `a == b && c || d`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub any: Vec<Vec<Comparison>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOp {
    Add,
    Sub,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulOp {
    Mul,
    Div,
    Rem,
}

impl Expr {
    /// The bare identifier this expression consists of, if that is all it is.
    pub fn as_ident(&self) -> Option<&Ident> {
        match (&self.first.first, self.rest.is_empty(), self.first.rest.is_empty()) {
            (Factor::Var(id), true, true) => Some(id),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ArgKind {
    /// `3x3`, `(k)x(k)`, `3x224x224`.
    Dims(Vec<Expr>),
    Float(f64),
    Str(String),
    /// A hyphenated word such as `double-channels`.
    Word(String),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub kind: ArgKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Repeat {
    pub count: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub label: Option<Ident>,
    pub stmt: Stmt,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Stage {
        name: Ident,
        body: Vec<Item>,
    },
    Block(BlockDef),
    /// A branch; with `range`, it reads channels `range.0 .. range.1` of its input.
    Branch {
        keyword: Span,
        range: Option<(Expr, Expr)>,
        body: Vec<Item>,
    },
    /// The input times the body's output, a per-channel (C x 1 x 1) gate.
    Gate {
        keyword: Span,
        body: Vec<Item>,
    },
    /// `shortcut_first`: written `shortcut { } residual { }`, the shortcut's layers first.
    Residual {
        keyword: Span,
        body: Vec<Item>,
        shortcut: Option<Vec<Item>>,
        shortcut_first: bool,
    },
    /// `if COND { } else { }`: the chosen body's items stand in place of the statement.
    If {
        keyword: Span,
        cond: Condition,
        then: Vec<Item>,
        otherwise: Option<Vec<Item>>,
    },
    Group {
        body: Vec<Item>,
        repeat: Option<Repeat>,
    },
    Call {
        callee: Ident,
        args: Vec<Expr>,
        repeat: Option<Repeat>,
    },
    Layer {
        op: Ident,
        args: Vec<Arg>,
        repeat: Option<Repeat>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct BlockDef {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct File {
    pub items: Vec<Item>,
}
