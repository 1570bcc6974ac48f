//! A small evaluator for normalised LaTeX arithmetic (numbers, `+ - * / ^ !`, `\frac`, `\sqrt`,
//! `\pi`, `\binom`, elementary functions, implicit multiplication, single-letter variables).
//! Two answers are judged equivalent when they use the same variables and agree at a few fixed
//! points: a cheap stand-in for the symbolic (sympy) check of the Python graders.

use std::collections::BTreeSet;

/// The value of `expr` with every variable set by `assignment`, and the variables it uses; `None`
/// when the text is not an expression this evaluator understands or the value is not finite.
pub fn evaluate(expr: &str, assignment: usize) -> Option<(f64, BTreeSet<String>)> {
    let tokens = tokenize(expr)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        assignment,
        variables: BTreeSet::new(),
        depth: 0,
    };
    let value = parser.expr()?;
    if parser.pos != parser.tokens.len() || !value.is_finite() {
        return None;
    }
    Some((value, parser.variables))
}

/// Number of distinct variable assignments [`evaluate`] knows.
pub const ASSIGNMENTS: usize = 3;

/// A fixed, non-integer value for each variable name and assignment, so both sides see the same one.
fn variable_value(name: &str, assignment: usize) -> f64 {
    let mut h: u64 = 1469598103934665603 ^ (assignment as u64).wrapping_mul(0x9e3779b97f4a7c15);
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(1099511628211);
    }
    // 1.1 .. 2.9: positive (so roots and logs stay real) and away from small integers.
    1.1 + (h % 1_000_003) as f64 / 1_000_003.0 * 1.8
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(String),
    Var(String),
    Cmd(&'static str),
    Sym(char),
}

const COMMANDS: [&str; 21] = [
    "arcsin", "arccos", "arctan", "binom", "cdot", "times", "frac", "sqrt", "sin", "cos", "tan",
    "cot", "sec", "csc", "div", "exp", "log", "ln", "pi", "mathbb", "infty",
];

fn tokenize(s: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Num(chars[start..i].iter().collect()));
        } else if c == '\\' {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && chars[end].is_ascii_alphabetic() {
                end += 1;
            }
            let word: String = chars[start..end].iter().collect();
            // "\pix" (spaces removed from "\pi x"): take the longest known command prefix.
            let cmd = COMMANDS
                .iter()
                .filter(|c| word.starts_with(*c))
                .max_by_key(|c| c.len())?;
            if *cmd == "infty" || *cmd == "mathbb" {
                return None;
            }
            out.push(Token::Cmd(cmd));
            i = start + cmd.len();
        } else if c.is_ascii_alphabetic() {
            let mut name = c.to_string();
            i += 1;
            // Subscripted variable: a_1, a_{n+1}.
            if chars.get(i) == Some(&'_') {
                name.push('_');
                i += 1;
                if chars.get(i) == Some(&'{') {
                    let mut depth = 0;
                    while i < chars.len() {
                        name.push(chars[i]);
                        match chars[i] {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        i += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                } else {
                    name.push(*chars.get(i)?);
                    i += 1;
                }
            }
            out.push(Token::Var(name));
        } else if "+-*/^!(){}[]".contains(c) {
            out.push(Token::Sym(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    assignment: usize,
    variables: BTreeSet<String>,
    /// Nesting of the recursive rules now (a hostile answer can nest deeper than any stack).
    depth: usize,
}

/// Deepest nesting of groups and signs evaluated; deeper text is not an expression we evaluate.
const MAX_DEPTH: usize = 100;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, sym: char) -> bool {
        if self.peek() == Some(&Token::Sym(sym)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, sym: char) -> Option<()> {
        self.eat(sym).then_some(())
    }

    /// Runs a rule one level deeper; None past [`MAX_DEPTH`].
    fn nested(&mut self, rule: fn(&mut Self) -> Option<f64>) -> Option<f64> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let value = rule(self);
        self.depth -= 1;
        value
    }

    fn expr(&mut self) -> Option<f64> {
        self.nested(Self::sum)
    }

    fn sum(&mut self) -> Option<f64> {
        let mut value = self.term()?;
        loop {
            if self.eat('+') {
                value += self.term()?;
            } else if self.eat('-') {
                value -= self.term()?;
            } else {
                return Some(value);
            }
        }
    }

    fn term(&mut self) -> Option<f64> {
        let mut value = self.unary()?;
        loop {
            match self.peek() {
                Some(Token::Sym('*')) | Some(Token::Cmd("cdot")) | Some(Token::Cmd("times")) => {
                    self.pos += 1;
                    value *= self.unary()?;
                }
                Some(Token::Sym('/')) | Some(Token::Cmd("div")) => {
                    self.pos += 1;
                    value /= self.unary()?;
                }
                Some(Token::Num(_))
                | Some(Token::Var(_))
                | Some(Token::Sym('('))
                | Some(Token::Sym('{')) => value *= self.power()?,
                Some(Token::Cmd(c)) if !matches!(*c, "cdot" | "times" | "div") => {
                    value *= self.power()?
                }
                _ => return Some(value),
            }
        }
    }

    fn unary(&mut self) -> Option<f64> {
        if self.eat('-') {
            return Some(-self.nested(Self::unary)?);
        }
        if self.eat('+') {
            return self.nested(Self::unary);
        }
        self.power()
    }

    fn power(&mut self) -> Option<f64> {
        self.nested(Self::power_of)
    }

    fn power_of(&mut self) -> Option<f64> {
        let base = self.postfix()?;
        if !self.eat('^') {
            return Some(base);
        }
        let exponent = self.exponent()?;
        Some(base.powf(exponent))
    }

    /// `^{...}`, `^-1`, or a single character: in LaTeX `x^23` is `x^2 * 3`.
    fn exponent(&mut self) -> Option<f64> {
        if self.eat('-') {
            return Some(-self.nested(Self::exponent)?);
        }
        if let Some(Token::Num(digits)) = self.peek().cloned() {
            let first: String = digits.chars().take(1).collect();
            let rest: String = digits.chars().skip(1).collect();
            if rest.is_empty() {
                self.pos += 1;
            } else {
                self.tokens[self.pos] = Token::Num(rest);
            }
            return first.parse().ok();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Option<f64> {
        let mut value = self.primary()?;
        while self.eat('!') {
            value = factorial(value)?;
        }
        Some(value)
    }

    fn group(&mut self) -> Option<f64> {
        self.expect('{')?;
        let v = self.expr()?;
        self.expect('}')?;
        Some(v)
    }

    fn primary(&mut self) -> Option<f64> {
        let token = self.peek()?.clone();
        self.pos += 1;
        match token {
            Token::Num(s) => s.parse().ok(),
            Token::Var(name) => {
                let v = variable_value(&name, self.assignment);
                self.variables.insert(name);
                Some(v)
            }
            Token::Sym('(') => {
                let v = self.expr()?;
                self.expect(')')?;
                Some(v)
            }
            Token::Sym('{') => {
                let v = self.expr()?;
                self.expect('}')?;
                Some(v)
            }
            Token::Cmd("frac") => {
                let num = self.group()?;
                let den = self.group()?;
                Some(num / den)
            }
            Token::Cmd("binom") => {
                let n = self.group()?;
                let k = self.group()?;
                Some(factorial(n)? / (factorial(k)? * factorial(n - k)?))
            }
            Token::Cmd("sqrt") => {
                let index = if self.eat('[') {
                    let v = self.expr()?;
                    self.expect(']')?;
                    v
                } else {
                    2.0
                };
                let radicand = self.group()?;
                Some(radicand.powf(1.0 / index))
            }
            Token::Cmd("pi") => Some(std::f64::consts::PI),
            Token::Cmd(func) => {
                // "\sin x", "\ln(2)", "\log_2 8" is not supported (underscore is not a token).
                let arg = self.power()?;
                Some(match func {
                    "sin" => arg.sin(),
                    "cos" => arg.cos(),
                    "tan" => arg.tan(),
                    "cot" => 1.0 / arg.tan(),
                    "sec" => 1.0 / arg.cos(),
                    "csc" => 1.0 / arg.sin(),
                    "arcsin" => arg.asin(),
                    "arccos" => arg.acos(),
                    "arctan" => arg.atan(),
                    "ln" | "log" => arg.ln(),
                    "exp" => arg.exp(),
                    _ => return None,
                })
            }
            Token::Sym(_) => None,
        }
    }
}

fn factorial(n: f64) -> Option<f64> {
    if n < 0.0 || n.fract() != 0.0 || n > 170.0 {
        return None;
    }
    Some((1..=n as u64).fold(1.0, |acc, k| acc * k as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Option<f64> {
        evaluate(s, 0).map(|(v, _)| v)
    }

    #[test]
    fn arithmetic_and_latex() {
        assert_eq!(value("2+3*4"), Some(14.0));
        assert_eq!(value("\\frac{3}{4}"), Some(0.75));
        assert_eq!(value("2\\sqrt{9}"), Some(6.0));
        assert_eq!(
            value("\\sqrt[3]{27}").map(|v| (v * 1e9).round() / 1e9),
            Some(3.0)
        );
        // LaTeX x^23 is x^2 * 3.
        assert_eq!(value("2^23"), Some(12.0));
        assert_eq!(value("2^{10}"), Some(1024.0));
        assert_eq!(value("5!/\\binom{5}{2}"), Some(12.0));
        assert_eq!(value("-(1+2)(3)"), Some(-9.0));
    }

    #[test]
    fn variables_are_collected_and_shared() {
        let (a, vars) = evaluate("2n+1", 1).unwrap();
        let (b, _) = evaluate("1+n+n", 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(vars.into_iter().collect::<Vec<_>>(), ["n"]);
        assert_ne!(evaluate("n", 0).unwrap().0, evaluate("m", 0).unwrap().0);
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        assert_eq!(value("\\infty"), None);
        assert_eq!(value("1,2"), None);
        assert_eq!(value("\\foo{1}"), None);
        assert_eq!(value("(1+2"), None);
        assert_eq!(value("1/0"), None);
    }
}
