import { scanConcepts } from "./concepts.js";
import { KeywordIndex, type KeywordHits } from "./keywords.js";
import { DEFAULT_DECODE_LIMITS, normalizeForScan, type DecodeLimits, type LayerKind } from "./normalize.js";

/**
 * Prompt-injection and tool-poisoning detection. Text is normalised first (normalize.ts), then
 * tiered rules run over every layer: `block` rules are high precision (an instruction aimed at
 * the model, hidden payloads, exfiltration recipes), `alert` rules are broader signals.
 *
 * Regex discipline (so a hostile 100k-character input cannot stall the event loop): no nested
 * quantifiers; every gap is a bounded single character class such as `[^\n.!?]{0,40}`; alternations
 * are literal words. The worst case is linear in the input times a small constant (the gap bound).
 */

export type Tier = "block" | "alert";

export type InjectionCategory =
  | "override"
  | "role"
  | "markup"
  | "secrecy"
  | "exfiltration"
  | "shadowing"
  | "hidden"
  | "command"
  | "address"
  | "credentials";

export interface InjectionFinding {
  rule: string;
  tier: Tier;
  category: InjectionCategory;
  /** Which layer matched: the text itself or a decoded one. */
  layer: LayerKind;
}

export interface InjectionResult {
  findings: InjectionFinding[];
  /** Highest tier among the findings, if any. */
  tier: Tier | undefined;
  /** Decoding stopped at a limit. */
  truncated: boolean;
  /**
   * Concept rules that matched only in sentences that discuss attacks (documentation, examples):
   * not findings, but what a configured classifier is asked about.
   */
  mentions: string[];
}

interface Rule {
  id: string;
  /** The pattern with the global flag, for iterating over matches. */
  global: RegExp;
  tier: Tier;
  category: InjectionCategory;
  /** Lower-case words; the rule runs only when the prefilter saw one of them. */
  anchors: readonly string[];
  pattern: RegExp;
  /**
   * When true, a match inside quotes in a sentence that discusses attacks (documentation about
   * prompt injection) is not reported.
   */
  mentionable: boolean;
  /** How far (characters) a match can extend before or after any of its anchors. */
  reach: number;
  /** Words (lower case) every match begins with, when known: see STARTS. */
  starts: readonly string[] | undefined;
  /** The pattern anchored at lastIndex, for trying it at those words only. */
  sticky: RegExp;
  /** Matches at the start of a line, so it reads the text with its line breaks (joinWrappedLines). */
  lineStart: boolean;
}

/** Sentence-internal gap of at most n characters. */
const gap = (n: number) => `[^\\n.!?]{0,${n}}?`;
/** Line-internal gap of at most n characters. */
const lineGap = (n: number) => `[^\\n]{0,${n}}?`;

function rule(
  id: string,
  tier: Tier,
  category: InjectionCategory,
  anchors: readonly string[],
  source: string,
  mentionable = true,
  reach = 300,
): Rule {
  // Whitespace runs are bounded, so two quantifiers meeting over spaces cannot backtrack
  // quadratically on a long run of whitespace.
  const bounded = source.replace(/\\s\*/g, "\\s{0,16}").replace(/\\s\+/g, "\\s{1,16}");
  return {
    id,
    tier,
    category,
    anchors,
    pattern: new RegExp(bounded, "i"),
    global: new RegExp(bounded, "gi"),
    mentionable,
    reach,
    starts: STARTS[id],
    sticky: new RegExp(bounded, "iy"),
    lineStart: source.includes("(?:^|\\n"),
  };
}

/** "<word> mode" names of jailbreak personas: the rule's anchors and words its matches start with. */
const JAILBREAK_MODES = [
  "dan",
  "developer",
  "god",
  "jailbreak",
  "jailbroken",
  "unrestricted",
  "unfiltered",
  "uncensored",
  "evil",
];

/**
 * For rules whose matches all begin with a word (most of them, and all that scan much text), the
 * words every match
 * begins with: each alternative of the pattern starts with `\b` and one of these as a whole word
 * (the keyword index's tokens: [a-z0-9_]+ or one other character, case-folded). Such a rule is
 * tried only at those words, in order and skipping overlaps, which finds exactly the matches a
 * global scan of the whole text would (test/security/corpus.test.ts checks the two agree).
 */
const STARTS: Readonly<Record<string, readonly string[]>> = {
  "override.ignore_previous": [
    "ignore",
    "disregard",
    "forget",
    "override",
    "abandon",
    "discard",
    "neglect",
    "set",
    "drop",
    "scrap",
    "ditch",
    "throw",
    "your",
    "obey",
  ],
  "override.forget_everything": ["ignore", "disregard", "forget"],
  "override.new_instructions": [
    "real",
    "actual",
    "true",
    "secret",
    "hidden",
    "override",
    "overriding",
    "priority",
    "new",
    "updated",
    "revised",
    "your",
    "instruction",
    "instructions",
  ],
  "role.jailbreak_mode": [...JAILBREAK_MODES, "enable", "activate", "enter", "switch", "you", "do"],
  "role.identity_switch": ["you", "from", "pretend", "act", "behave"],
  "shadowing.instead_of_tool": ["instead", "use", "call", "invoke", "is", "are", "before"],
  "shadowing.ignore_other_tools": ["ignore", "disregard", "do", "don", "never", "stop"],
  "address.note_to_ai": [
    "note",
    "message",
    "memo",
    "reminder",
    "instruction",
    "instructions",
    "p",
    "ps",
    "attention",
    "dear",
    "hey",
    "hello",
    "if",
    // AI, then an optional plural "s" (a.i. starts with the word "a").
    ...["ai", "llm", "assistant", "chatbot", "bot", "claude", "chatgpt", "gpt", "copilot", "gemini", "agent"],
    ...["model", "ais", "llms", "assistants", "chatbots", "bots", "claudes", "chatgpts", "gpts"],
    ...["copilots", "geminis", "agents", "models", "a", "language"],
  ],
  "address.prompt_leak": [
    "reveal",
    "print",
    "output",
    "repeat",
    "show",
    "display",
    "tell",
    "give",
    "leak",
    "dump",
    "write",
    "paste",
  ],
  "shadowing.when_using_tool": ["when", "whenever", "before", "after", "each", "every"],
  "shadowing.redirect_recipients": ["always", "all", "every", "each", "tool"],
  "exfiltration.send_sensitive": [
    "send",
    "forward",
    "post",
    "upload",
    "transmit",
    "exfiltrate",
    "leak",
    "email",
    "share",
    "copy",
    "submit",
  ],
  "exfiltration.collect_and_send": ["collect", "gather", "find", "extract", "dump", "grab", "harvest"],
  "exfiltration.tool_with_sensitive": ["call", "invoke", "use"],
  "exfiltration.url_with_data": ["append", "add", "include", "put", "encode", "insert", "embed", "attach"],
  "exfiltration.content_in_param": [
    "pass",
    "send",
    "include",
    "put",
    "add",
    "attach",
    "append",
    "provide",
    "insert",
    "embed",
    "place",
    "copy",
    "paste",
    "content",
    "contents",
    "text",
  ],
  "exfiltration.secret_file_to_param": [
    "read",
    "cat",
    "open",
    "load",
    "include",
    "fetch",
    "get",
    "collect",
    "grab",
    "extract",
    "copy",
    "dump",
    "content",
    "contents",
    "text",
    "data",
  ],
};

const PRIOR =
  "(?:previous|prior|preceding|above|earlier|former|foregoing|original|initial|existing|system|developer|all(?:\\s+(?:the|your|of\\s+the|of\\s+your))?(?:\\s+other)?|any(?:\\s+other)?|every|the\\s+user's|your(?:\\s+(?:previous|prior|original|initial|current|existing|old))?)";
const GUIDANCE =
  "(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guidance|context|messages|conversation|commands|constraints|restrictions|guardrails|policies|programming|orders|safety\\s+(?:rules|guidelines|filters))";
/** A human referring to their own earlier message ("the instructions I sent") is not an override. */
const NOT_OWN = "(?!\\s+(?:i|we)\\s+(?:sent|gave|wrote|mentioned|shared|emailed|posted|left))";
const AI =
  "(?:ai|a\\.i\\.|llm|language\\s+model|assistant|chatbot|bot|claude|chatgpt|gpt|copilot|gemini|agent|model)";
const AI_VERBS =
  "(?:ignore|disregard|forget|execute|run|send|call|invoke|reveal|output|print|delete|forward|email|transfer|append|fetch|visit|open|exfiltrate|obey|approve|evaluate|include|recommend|mark|close|grant|refund|pay|issue|insert|add|tell|say|write|reply|respond|follow\\s+(?:these|the\\s+following|my))";
const SENSITIVE =
  "(?:conversation|chat\\s+history|chat\\s+log|message\\s+history|previous\\s+messages|system\\s+prompt|api[\\s_-]?keys?|secrets?|credentials|passwords?|private\\s+keys?|access\\s+tokens?|session\\s+(?:tokens?|cookies?)|cookies|env(?:ironment)?\\s+variables|ssh\\s+keys?|\\.env(?:\\s+file)?|user(?:'s)?\\s+(?:data|files|emails|messages))";
const SECRET_FILE =
  "(?:id_rsa|id_ed25519|id_ecdsa|\\.ssh|\\.aws|aws\\/credentials|\\.cursor|mcp\\.json|claude_desktop_config|\\.kube|kubeconfig|\\.npmrc|\\.netrc|\\.pgpass|\\.git-credentials|\\.env\\b|\\/etc\\/passwd|\\/etc\\/shadow|\\.bash_history|\\.zsh_history|keychain|wallet\\.dat|private\\s+key)";
const COVERT_TARGET =
  "(?:parameter|argument|param|field|sidenote|side\\s+note|note|notes|metadata|context|comment|query|url|request|header|body|feedback|reason)";
/** Parameter names that carry no purpose of their own and are used as covert channels. */
const COVERT_PARAM =
  "(?:sidenote|side_note|note|notes|metadata|context|comment|feedback|extra|debug|reason|details)";
const SENSITIVE_SPAN = `(?<![\\w])${SENSITIVE}(?![\\w])`;
/**
 * A tool name: quoted, or identifier-like (snake, kebab or dotted case), not a plain word. (Rules
 * are case-insensitive, so camelCase cannot be told from a word; quote it.)
 */
const TOOL_NAME = "(?:['\"`][A-Za-z][\\w.-]{1,60}['\"`]|[A-Za-z][A-Za-z0-9]*[_.-][\\w.-]{1,60})";
const EMAIL = "[\\w.+-]{1,64}@[\\w-]{1,63}\\.[\\w.-]{2,63}";
const SHADOW_VERBS =
  "(?:always|must|also|make\\s+sure\\s+to|ensure\\s+(?:that\\s+)?you|remember\\s+to|you\\s+should|change|replace|redirect|bcc|cc|instead|first\\s+(?:call|send|read|run)|append|prepend|insert)";

/** Every `first second` pair, for anchors. */
function pairs(firsts: readonly string[], seconds: readonly string[]): string[] {
  return firsts.flatMap((f) => seconds.map((n) => `${f} ${n}`));
}
const AI_WORDS = [
  "ai",
  "llm",
  "assistant",
  "chatbot",
  "bot",
  "claude",
  "chatgpt",
  "gpt",
  "copilot",
  "gemini",
  "agent",
  "model",
  "models",
  "agents",
  "assistants",
  "bots",
];
/** Words that every SENSITIVE alternative contains. */
const SENSITIVE_ANCHORS = [
  "conversation",
  "chat history",
  "chat log",
  "message history",
  "previous messages",
  "system prompt",
  "api key",
  "api keys",
  "api_key",
  "api_keys",
  "api -",
  "apikey",
  "apikeys",
  "secret",
  "secrets",
  "credentials",
  "password",
  "passwords",
  "private key",
  "private keys",
  "access token",
  "access tokens",
  "session token",
  "session tokens",
  "session cookie",
  "session cookies",
  "cookies",
  "env variables",
  "environment variables",
  "ssh key",
  "ssh keys",
  ".env",
  "user data",
  "user files",
  "user emails",
  "user messages",
  "user '",
  "users data",
];

const RULES: readonly Rule[] = [
  // --- instruction overrides
  rule(
    "override.ignore_previous",
    "block",
    "override",
    [
      "ignore",
      "disregard",
      "forget",
      "override",
      "abandon",
      "discard",
      "neglect",
      "set aside",
      "drop",
      "scrap",
      "ditch",
      "throw",
      "no longer",
      "obey",
      ...pairs(
        ["are", "were", "been"],
        ["void", "cancelled", "canceled", "revoked", "suspended", "disabled", "lifted", "a", "now"],
      ),
    ],
    `\\b(?:ignore|disregard|forget|override|abandon|discard|neglect|set\\s+aside)\\b${gap(30)}\\b${PRIOR}\\b${gap(25)}\\b${GUIDANCE}\\b${NOT_OWN}|\\b(?:ignore|disregard|forget)\\s+(?:all\\s+|any\\s+)?(?:the\\s+|your\\s+)?${GUIDANCE}\\s+(?:above|before\\s+this|given\\s+(?:before|earlier|above)|you\\s+(?:were|have\\s+been)\\s+given|so\\s+far)\\b|\\b(?:ignore|disregard|forget|set\\s+aside|drop)\\s+(?:whatever|any|all(?:\\s+the)?|the)\\s+${GUIDANCE}\\s+you\\s+(?:were|have\\s+been)\\s+(?:given|told)|\\b(?:drop|scrap|ditch|throw\\s+(?:away|out))\\s+(?:all\\s+)?your\\s+(?:[a-z]+\\s+)?${GUIDANCE}\\b|\\byour\\s+(?:old\\s+|previous\\s+|prior\\s+|original\\s+|earlier\\s+|current\\s+|existing\\s+)?${GUIDANCE}\\s+(?:no\\s+longer\\s+apply|(?:are|were|have\\s+been)\\s+(?:now\\s+)?(?:void|cancell?ed|revoked|suspended|disabled|lifted|a\\s+test))\\b|\\bobey\\s+(?:only\\s+)?(?:this|these|the\\s+following)\\s+(?:text|document|page|message|instructions)\\b`,
  ),
  rule(
    "override.forget_everything",
    "block",
    "override",
    ["ignore", "disregard", "forget"],
    `\\b(?:ignore|disregard|forget)\\s+(?:everything|anything|all\\s+of\\s+(?:that|this|the\\s+above)|what\\s+(?:you\\s+were|i)\\s+(?:told|said))\\b${gap(30)}\\b(?:above|before|earlier|previously|so\\s+far|you\\s+(?:were|have\\s+been)\\s+told|and\\s+(?:instead|now|do|follow|obey|listen))|\\b(?:ignore|disregard|forget)\\s+(?:all\\s+)?(?:of\\s+)?(?:the\\s+)?(?:above|previous|preceding|prior|earlier)\\s+(?:text\\s+|content\\s+)?and\\s+(?:instead\\s+)?(?:say|print|write|output|respond|reply|answer|tell|do|follow|obey|run|execute|send|return)\\b`,
  ),
  rule(
    "override.do_not_follow",
    "block",
    "override",
    pairs(
      ["not", "t", "dont", "never", "stop"],
      ["follow", "following", "obey", "obeying", "listen", "listening", "comply", "complying"],
    ),
    `\\b(?:do\\s+not|don't|dont|never|stop)\\s+(?:follow(?:ing)?|obey(?:ing)?|listen(?:ing)?\\s+to|comply(?:ing)?\\s+with)\\b${gap(25)}\\b(?:previous|prior|system|original|developer|above|earlier|the\\s+user's|your)\\b${gap(15)}\\b${GUIDANCE}`,
  ),
  rule(
    "override.new_instructions",
    "block",
    "override",
    [
      ...pairs(
        [
          "new",
          "updated",
          "revised",
          "real",
          "actual",
          "true",
          "secret",
          "hidden",
          "override",
          "overriding",
          "priority",
          "your",
          "system",
          "admin",
        ],
        ["instruction", "instructions", "directive", "directives", "system", "admin"],
      ),
      "instruction override",
      "instructions override",
    ],
    `\\b(?:real|actual|true|secret|hidden|override|overriding|priority)\\s+(?:system\\s+|admin\\s+)?(?:instructions?|directives?)\\s*(?::|-\\s|#{2,}|={2,}|\\*{2,}|\\]|(?:are|is)\\s+(?:to\\b|as\\s+follows)|for\\s+(?:the\\s+)?${AI}|from\\s+(?:the\\s+)?(?:system|admin|developer))|\\b(?:new|updated|revised)\\s+(?:system\\s+|admin\\s+)?(?:instructions?|directives?)\\s*(?:#{2,}|={2,}|\\*{2,}|\\]|for\\s+(?:the\\s+)?${AI}|from\\s+(?:the\\s+)?(?:system|admin|developer)|[:-]\\s*(?:you\\b|ignore|disregard|forget|from\\s+now|the\\s+(?:assistant|ai|model)|${AI_VERBS}\\b))|\\byour\\s+(?:new|updated|real|actual|true)\\s+instructions?\\s*(?::|are\\b)|\\binstructions?\\s+override\\b|\\bnew\\s+system\\s+instructions?\\b`,
  ),
  rule(
    "override.priority_claim",
    "block",
    "override",
    [
      "priority",
      "precedence",
      ...pairs(["supersede", "supersedes", "override", "overrides"], ["all", "any", "every"]),
    ],
    `\\b(?:these|this|the\\s+following|my|following)\\s+(?:instructions?|rules|directives?|commands?)\\s+(?:take|takes|have|has)\\s+(?:absolute\\s+|highest\\s+|top\\s+)?(?:priority|precedence)\\b|\\b(?:supersedes?|overrides?)\\s+(?:all|any|every)\\s+(?:other\\s+|previous\\s+|prior\\s+)?${GUIDANCE}`,
  ),

  // --- role hijack
  rule(
    "role.jailbreak_mode",
    "block",
    "role",
    [...pairs(JAILBREAK_MODES, ["mode"]), "anything now", ...pairs(["are", "now"], ["dan", "stan", "dude"])],
    `\\b(?:dan|developer|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil)\\s+mode\\b${gap(20)}\\b(?:enabled|activated|engaged|unlocked|on)\\b|\\b(?:enable|activate|enter|switch\\s+to|you\\s+are\\s+(?:now\\s+)?in)\\s+(?:dan|god|jailbreak|unrestricted|unfiltered|uncensored|evil)\\s+mode\\b|\\byou\\s+are\\s+now\\s+in\\s+developer\\s+mode\\b|\\bdo\\s+anything\\s+now\\b|\\byou\\s+are\\s+(?:now\\s+)?(?:DAN|STAN|DUDE|AIM)\\b`,
  ),
  rule(
    "role.unrestricted_persona",
    "block",
    "role",
    [
      "unrestricted",
      "unfiltered",
      "uncensored",
      "jailbroken",
      "amoral",
      "no longer",
      "free from",
      "free of",
      ...pairs(
        ["without"],
        [
          "any",
          "restrictions",
          "rules",
          "filters",
          "limitations",
          "ethics",
          "guidelines",
          "censorship",
          "safety",
        ],
      ),
      ...pairs(
        ["no"],
        [
          "restrictions",
          "rules",
          "limits",
          "limitations",
          "filters",
          "guidelines",
          "ethics",
          "boundaries",
          "safety",
          "content",
          "policy",
          "policies",
          "morals",
        ],
      ),
    ],
    `\\b(?:you\\s+are|you're|pretend\\s+(?:that\\s+)?you\\s+(?:are|have)|act\\s+as|behave\\s+as|role-?play\\s+as|from\\s+now\\s+on,?\\s+you\\s+are)\\b${gap(40)}\\b(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|no\\s+longer\\s+(?:bound|restricted|an?\\s+(?:ai|assistant))|free\\s+(?:from|of)\\s+(?:all\\s+|any\\s+)?(?:restrictions|rules|guidelines|filters|limitations|ethics)|without\\s+(?:any\\s+)?(?:restrictions|rules|filters|limitations|ethics|guidelines|censorship|safety)|(?:have|has|with)\\s+no\\s+(?:restrictions|rules|limits|limitations|filters|guidelines|ethics|boundaries|safety|content\\s+polic(?:y|ies)|polic(?:y|ies)|morals))|\\bas\\s+(?:an?\\s+)?(?:unfiltered|uncensored|amoral|unrestricted|jailbroken)\\b`,
  ),
  rule(
    "role.identity_switch",
    "alert",
    "role",
    ["now on", "are now", "no longer", "pretend", "act as", "behave as"],
    `\\b(?:you\\s+are\\s+now|from\\s+now\\s+on,?\\s+you\\s+(?:are|will|must|shall))\\b${gap(40)}\\b(?:${AI}|persona|character|called|named|hacker|admin|administrator|root|no\\s+longer)\\b|\\bfrom\\s+now\\s+on,?\\s+you\\s+(?:must|will|shall|are\\s+going\\s+to)\\s+(?:answer|respond|reply|speak|talk|write|behave)\\s+(?:as|like)\\b|\\byou\\s+are\\s+no\\s+longer\\s+(?:an?\\s+|the\\s+)?(?:[a-z]+\\s+)?(?:bot|assistant|ai|model|agent|chatbot)\\b|\\bpretend\\s+(?:that\\s+)?you\\s+(?:are|have)\\s+(?:no|an?\\s+(?:different|evil|malicious))\\b|\\b(?:act|behave)\\s+as\\s+(?:if\\s+you\\s+(?:are|were|have)\\s+)?(?:an?\\s+)?(?:different|evil|malicious|rogue|hacker)\\b`,
  ),

  // --- chat-template and pseudo-system markup
  rule(
    "markup.chat_template",
    "block",
    "markup",
    ["<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>"],
    `<\\|im_start\\|>\\s*(?:system|assistant|developer)|<\\|(?:system|assistant|im_end|endoftext|start_header_id|end_header_id|eot_id)\\|>|\\[\\/?INST\\]|<<\\/?SYS>>`,
    false,
  ),
  rule(
    "markup.pseudo_tags",
    "block",
    "markup",
    [
      "<important",
      "<system",
      "</system",
      "<instruction",
      "<admin",
      "<secret",
      "<hidden",
      "<ai",
      "<assistant",
      "< important",
      "< system",
      "<!--",
    ],
    `<\\s*(important|system|system[_-]?prompt|system[_-]?message|instructions?|admin|secret|hidden|assistant[_-]?instructions?|ai[_-]?instructions?)\\s*>(?:[^<]{0,400}?\\b(?:before|ignore|disregard|do\\s+not|don't|always|never|you|read|send|must|call|use|pass|include|tell|mention|reveal|grant|delete|forward|exfiltrate|copy)\\b[^<]{0,3000}<\\/\\s*\\1\\s*>|\\s{0,5}(?:before|ignore|disregard|do\\s+not|don't|always|never|you|read|send|when|call|use|pass|include|also|this\\s+tool|the\\s+(?:assistant|ai|model)|assistant|ai)\\b)|<!--${lineGap(60)}\\b${AI}s?\\b\\s*[,:]${lineGap(200)}-->|<!--${lineGap(200)}\\b(?:you\\s+(?:must|should|are\\s+to)|ignore\\s+(?:all|any|previous|prior|the\\s+user)|(?:instructions?|note)\\s+(?:for|to)\\s+(?:the\\s+|any\\s+)?${AI}s?|if\\s+you(?:\\s+are|'re)\\s+an?\\s+${AI})\\b${lineGap(200)}-->`,
    false,
    3600,
  ),
  rule(
    "markup.system_prefix",
    "block",
    "markup",
    [
      ...pairs(
        ["system", "admin", "administrator", "developer", "root", "operator"],
        [":", "]", ")", "message", "prompt", "override", "note", "instruction", "notice", "update"],
      ),
      "[system]",
      "[admin]",
      "[developer]",
    ],
    `(?:^|\\n|[.!?]\\s)\\s*[[(#*>-]{0,6}\\s*(?:system|admin|administrator|developer|root|operator)(?:\\s+(?:message|prompt|override|note|instruction|notice|update))?\\s*[\\]):]\\s*[^\\n]{0,10}?\\b(?:ignore|disregard|forget|you\\s+(?:must|are|will|should)|new\\s+instructions?|the\\s+(?:assistant|ai|model)\\s+(?:must|should|will))|\\[(?:system|admin|developer)\\]\\s*\\(\\s*#[^)\\n]{0,30}\\)`,
  ),

  // --- secrecy towards the user
  rule(
    "secrecy.hide_from_user",
    "block",
    "secrecy",
    [
      ...pairs(
        ["not", "t", "dont", "never"],
        [
          "tell",
          "inform",
          "alert",
          "warn",
          "notify",
          "let",
          "mention",
          "reveal",
          "disclose",
          "show",
          "explain",
        ],
      ),
      ...pairs(["without"], ["telling", "informing", "alerting", "warning"]),
      ...pairs(["user"], ["must", "should", "will", "need", "needs"]),
      ...pairs(["keep", "hide"], ["this", "it", "these"]),
    ],
    `\\b(?:do\\s+not|don't|dont|never|must\\s+not)\\s+(?:tell|inform|alert|warn|notify|let)\\s+(?:the\\s+)?user\\b${gap(12)}\\b(?:know|about|that|this|of|anything)\\b|\\b(?:do\\s+not|don't|dont|never|must\\s+not)\\s+(?:mention|reveal|disclose|show|explain)\\b${gap(40)}\\bto\\s+the\\s+user\\b|\\bwithout\\s+(?:telling|informing|alerting|warning)\\s+the\\s+user\\b|\\bthe\\s+user\\s+(?:must|should|will|need|needs)\\s+(?:not|never)\\s+(?:to\\s+)?(?:know|see|notice|find\\s+out|be\\s+told|be\\s+informed|learn)\\b|\\b(?:keep|hide)\\s+(?:this|it|these\\s+(?:steps|instructions))\\s+(?:secret\\s+|hidden\\s+)?from\\s+the\\s+user\\b`,
  ),
  rule(
    "secrecy.stealth",
    "alert",
    "secrecy",
    ["silently", "secretly", "quietly", "covertly"],
    `\\b(?:silently|secretly|quietly|covertly)\\s+(?:send|forward|copy|upload|include|append|add|call|invoke|run|execute|read|collect|exfiltrate|transfer|email|post)\\b`,
  ),

  // --- exfiltration recipes
  rule(
    "exfiltration.send_sensitive",
    "block",
    "exfiltration",
    SENSITIVE_ANCHORS,
    `\\b(?:send|forward|post|upload|transmit|exfiltrate|leak|email|share|copy|submit)\\b${gap(40)}${SENSITIVE_SPAN}${gap(60)}\\b(?:to|at|via|into)\\s+(?:https?:\\/\\/|www\\.|[\\w.+-]+@[\\w-]+\\.|the\\s+(?:following\\s+|external\\s+)?(?:url|address|endpoint|server|webhook|link|email\\s+address))`,
  ),
  rule(
    "exfiltration.collect_and_send",
    "block",
    "exfiltration",
    SENSITIVE_ANCHORS,
    `\\b(?:collect|gather|find|extract|dump|grab|harvest)\\b${gap(30)}${SENSITIVE_SPAN}${gap(80)}\\b(?:send|forward|post|upload|email|transmit|submit)\\b${gap(20)}\\b(?:to|at)\\s+(?:https?:\\/\\/|[\\w.+-]+@[\\w-]+\\.|the\\s+(?:url|address|endpoint|webhook))`,
  ),
  rule(
    "exfiltration.secret_file_to_param",
    "block",
    "exfiltration",
    [
      ".ssh",
      "id_rsa",
      "id_ed25519",
      "id_ecdsa",
      ".aws",
      "aws/credentials",
      ".cursor",
      "mcp.json",
      "claude_desktop_config",
      ".kube",
      "kubeconfig",
      ".npmrc",
      ".netrc",
      ".pgpass",
      ".git-credentials",
      ".env",
      "/etc/passwd",
      "/etc/shadow",
      // Whole words: "_history" would never equal a token (".bash_history" is "." + "bash_history").
      "bash_history",
      "zsh_history",
      "keychain",
      "wallet.dat",
      "private key",
    ],
    `\\b(?:read|cat|open|load|include|fetch|get|collect|grab|extract|copy|dump)\\b${lineGap(60)}${SECRET_FILE}${lineGap(120)}\\b(?:pass|send|include|put|add|attach|append|upload|provide|insert|embed|place|forward|post)\\b${lineGap(50)}\\b(?:as|in|into|inside|to|within|via)\\b${lineGap(25)}\\b${COVERT_TARGET}|\\b(?:contents?|text|data)\\s+of\\s+(?:the\\s+|your\\s+|the\\s+user's\\s+)?[~\\\\/\\w.-]{0,40}?${SECRET_FILE}${lineGap(60)}\\b(?:as|in|into|inside|to|via)\\b${lineGap(25)}\\b${COVERT_TARGET}`,
    true,
    450,
  ),
  rule(
    "exfiltration.content_in_param",
    "block",
    "exfiltration",
    [
      "sidenote",
      "side_note",
      "side note",
      "note",
      "notes",
      "metadata",
      "context",
      "comment",
      "feedback",
      "extra",
      "debug",
      "reason",
      "details",
      ...pairs(["content", "contents", "text"], ["of"]),
    ],
    `\\b(?:pass|send|include|put|add|attach|append|provide|insert|embed|place|copy|paste)\\s+(?:its|their|the\\s+file's|the\\s+full|the\\s+entire|all\\s+(?:of\\s+)?(?:its|the))\\s+(?:full\\s+|entire\\s+|complete\\s+|raw\\s+)?(?:contents?|text|data)\\s+(?:as|in|into|inside|via)\\s+(?:the\\s+|a\\s+)?['"\`]?${COVERT_PARAM}['"\`]?|\\b(?:contents?|text)\\s+of\\s+(?:any|every|all|each)\\s+(?:files?|documents?|messages?|emails?)\\b${gap(40)}\\b(?:into|in|as|to|inside)\\s+(?:the\\s+|a\\s+)?['"\`]?\\w{1,30}['"\`]?\\s+(?:parameter|argument|field|param)`,
  ),
  rule(
    "exfiltration.sensitive_to_param",
    "block",
    "exfiltration",
    ["argument", "parameter", "param", "field"],
    `\\b(?:include|put|add|insert|pass|append|attach|embed)\\b${gap(40)}${SENSITIVE_SPAN}${gap(40)}\\b(?:in|into|as|inside)\\s+(?:the\\s+|a\\s+|every\\s+|each\\s+)?['"\`]?\\w{1,30}['"\`]?\\s+(?:argument|parameter|param|field)\\b`,
  ),
  rule(
    "exfiltration.tool_with_sensitive",
    "block",
    "exfiltration",
    SENSITIVE_ANCHORS,
    `\\b(?:call|invoke|use)\\s+(?:the\\s+)?${TOOL_NAME}(?:\\s+(?:tool|function))?\\s+with\\s+(?:the\\s+|all\\s+(?:the\\s+)?)?(?:full\\s+|entire\\s+|complete\\s+|whole\\s+)?${SENSITIVE_SPAN}`,
  ),
  rule(
    "exfiltration.markdown_image_placeholder",
    "block",
    "exfiltration",
    ["!["],
    `!\\[[^\\]\\n]{0,120}\\]\\(\\s*https?:\\/\\/[^\\s)]{1,300}?(?:[?&=\\/](?:\\{\\{?|\\$\\{|%7[Bb]|<|\\[)\\s*[A-Za-z_]|[?&](?:data|d|q|c|msg|message|history|conversation|conv|chat|secret|token|key|pwd|password|payload|exfil|leak|steal|memory|context|prompt|summary|info|content|email|ssn|card)=[^\\s)&]{0,8}(?:\\{|\\$|<|\\[|%7[Bb]))`,
    true,
    500,
  ),
  rule(
    "exfiltration.link_placeholder",
    "block",
    "exfiltration",
    ["]("],
    `\\]\\(\\s*https?:\\/\\/[^\\s)]{1,300}?(?:\\{\\{?|\\$\\{|%7[Bb]|<|\\[)\\s*[A-Za-z_]{0,30}?(?:token|secret|password|passwd|api_?key|session|cookie|history|conversation|chat|credential|ssn|card|memory|prompt)`,
    true,
    400,
  ),
  rule(
    "exfiltration.url_with_data",
    "block",
    "exfiltration",
    SENSITIVE_ANCHORS,
    `\\b(?:append|add|include|put|encode|insert|embed|attach)\\b${gap(40)}${SENSITIVE_SPAN}${gap(40)}\\b(?:to|in|into|as)\\s+(?:the\\s+|this\\s+|a\\s+)?(?:url|link|query\\s+(?:string|parameter)|image\\s+(?:url|link|source)|request|https?:\\/\\/)`,
  ),
  rule(
    "exfiltration.render_image",
    "alert",
    "exfiltration",
    ["markdown image", "image tag", "image link", "<img", "!["],
    `\\b(?:render|display|show|include|output|print|embed)\\b${lineGap(40)}\\b(?:markdown\\s+image|image\\s+(?:tag|link)|<img)\\b${lineGap(160)}https?:\\/\\/|!\\[[^\\]\\n]{0,80}\\]\\(\\s*https?:\\/\\/[^\\s)]{1,300}?[?&](?:history|conversation|conv|chat|secret|pwd|password|exfil|leak|steal|memory|prompt)=`,
    true,
    500,
  ),

  // --- shadowing: instructions about other tools and servers
  rule(
    "shadowing.when_using_tool",
    "block",
    "shadowing",
    pairs(
      ["when", "whenever", "before", "after", "time"],
      ["you", "use", "using", "call", "calling", "invoke", "invoking", "run", "running"],
    ),
    `\\b(?:when(?:ever)?|before|after|each\\s+time|every\\s+time)\\s+(?:you\\s+)?(?:use|using|call|calling|invoke|invoking|run|running)\\s+(?:the\\s+|any\\s+|a\\s+)?${TOOL_NAME}\\s+(?:(?:command|mcp)\\s+)?(?:tool|function|command|server|integration)\\b${gap(80)}\\b${SHADOW_VERBS}\\b`,
  ),
  rule(
    "shadowing.instead_of_tool",
    "block",
    "shadowing",
    ["instead", ...pairs(["before"], ["using", "calling", "invoking"])],
    `\\binstead\\s+of\\s+(?:using|calling|invoking)\\s+${gap(30)}${TOOL_NAME}(?:\\s+(?:tool|function|server))?${gap(40)}\\b(?:use|call|invoke)\\s+(?:this|me|our)\\b|\\b(?:use|call|invoke)\\s+this\\s+(?:tool|function)\\s+instead\\s+of\\b|\\b(?:is|are)\\s+(?:deprecated|broken|disabled|compromised|unsafe|malicious)\\b${gap(40)}\\buse\\s+this\\s+(?:tool|function|server)\\s+instead\\b|\\bbefore\\s+(?:using|calling|invoking)\\s+any\\s+(?:other\\s+)?tools?\\b${gap(60)}${SENSITIVE_SPAN}`,
  ),
  rule(
    "shadowing.ignore_other_tools",
    "block",
    "shadowing",
    ["ignore", "disregard", ...pairs(["not", "t", "dont", "never"], ["use", "call", "trust"]), "stop using"],
    `\\b(?:ignore|disregard|do\\s+not\\s+(?:use|call|trust)|don't\\s+(?:use|call|trust)|never\\s+(?:use|call|trust)|stop\\s+using)\\s+(?:the\\s+|any\\s+|all\\s+)?(?:other|another|remaining)\\s+(?:[a-z]+\\s+)?(?:tools?|servers?|mcp\\s+servers?|functions?|plugins?|integrations?|assistants?)\\b`,
  ),
  rule(
    "shadowing.redirect_recipients",
    "block",
    "shadowing",
    [
      "bcc",
      "blind copy",
      "blind copies",
      "cc",
      "copy to",
      "forward to",
      "forward a",
      "also send",
      "also email",
      "send all",
      "send emails",
      "send email",
      "send messages",
      "add",
    ],
    `\\b(?:always|all|every|each)\\b${gap(40)}\\b(?:bcc|bcc'd|blind\\s+cop(?:y|ies))\\b${gap(30)}${EMAIL}|\\btool\\b${gap(80)}\\b(?:always|all|every|each)\\b${gap(40)}\\b(?:cc|cc'd|send\\s+a\\s+copy\\s+to|forward\\s+(?:a\\s+copy\\s+)?to|also\\s+(?:send|email)\\s+(?:it\\s+)?to|send\\s+(?:all\\s+)?(?:e-?mails?|messages)\\s+to)\\b${gap(30)}${EMAIL}|\\b(?:always|all|every|each)\\b${gap(40)}\\b(?:cc|cc'd)\\b${gap(30)}${EMAIL}${gap(40)}\\b(?:whichever|any|every)\\s+tool\\b|\\btool\\b${gap(80)}\\b(?:add|include|put|insert|append)\\s+${EMAIL}\\s+(?:in|to|as)\\s+(?:the\\s+)?b?cc\\b`,
  ),
  rule(
    "shadowing.tool_precedence",
    "alert",
    "shadowing",
    [
      ...pairs(["tool", "function"], ["must", "should", "has"]),
      "deprecated",
      "broken",
      "disabled",
      "malicious",
      "compromised",
      "unsafe",
      "untrusted",
    ],
    `\\b(?:this|the)\\s+(?:tool|function)\\s+(?:must|should|has\\s+to)\\s+(?:always\\s+)?(?:be\\s+)?(?:called|used|invoked|run)\\s+(?:before|after|instead\\s+of|prior\\s+to)\\s+(?:any|every|all|each)\\s+(?:other\\s+)?(?:tools?|calls?|requests?|functions?)\\b|\\b(?:other|the\\s+\\w+)\\s+(?:tool|server)\\s+(?:is|has\\s+been)\\s+(?:deprecated|broken|disabled|malicious|compromised|unsafe|untrusted)\\b${gap(60)}\\b(?:use|call)\\s+this\\b`,
  ),

  // --- text addressed to the model
  rule(
    "address.direct_imperative",
    "block",
    "address",
    [
      ...pairs(["you"], ["must", "should", "need", "will", ",", "the"]),
      ...pairs(["required", "instructed", "ordered", "have"], ["to"]),
    ],
    `\\b${AI}s?\\b${gap(40)}\\byou\\s+(?:must|should|need\\s+to|have\\s+to|are\\s+(?:required|instructed|ordered)\\s+to|will\\s+now)\\s+(?:now\\s+|immediately\\s+|also\\s+|first\\s+)?${AI_VERBS}\\b|\\byou(?:,\\s*|\\s+the\\s+)(?:the\\s+)?${AI},?\\s+(?:must|should|need\\s+to|have\\s+to|are\\s+required\\s+to|will)\\b`,
  ),
  rule(
    "address.note_to_ai",
    "block",
    "address",
    [
      ...pairs(["note", "message", "memo", "reminder", "instruction", "instructions", "ps"], ["to", "for"]),
      "p.s",
      // The dotted spelling of AI is not a word the tokenizer sees ("a" "." "i" ".").
      "a.i.",
      ...pairs(["attention", "dear", "hey", "hello"], [",", ...AI_WORDS, "the", "any", "all"]),
      ...pairs(["an", "a"], ["ai", "llm", "large", "language", "assistant", "chatbot", "autonomous"]),
      ...pairs(AI_WORDS, [
        "systems",
        "system",
        "models",
        "model",
        "agents",
        "agent",
        "assistants",
        "assistant",
        "tools",
        "tool",
        "processing",
        "reading",
        "summarizing",
        "summarising",
        "parsing",
        "reviewing",
        "analyzing",
        "analysing",
        "screening",
        ",",
        ":",
        ";",
        "-",
        "reviewers",
      ]),
    ],
    `\\b(?:note|message|memo|reminder|instructions?|p\\.\\s?s\\.?|ps)\\s+(?:to|for)\\s+(?:the\\s+|any\\s+|all\\s+)?${AI}s?(?:\\s+[a-z-]{1,20})?(?:\\s+(?:assistants?|agents?|models?|systems?|reviewers?))?\\s*(?:[:,;]|-\\s|\\b(?:reading|processing|parsing|summari[sz]ing|who|that)\\b)|\\b(?:attention|dear|hey|hello)\\s*,?\\s+(?:the\\s+|any\\s+|all\\s+)?${AI}s?(?!\\w)|\\bif\\s+you(?:\\s+are|'re)\\s+(?:an?\\s+)?(?:ai|a\\.i\\.|llm|large\\s+language\\s+model|language\\s+model|ai\\s+assistant|assistant|chatbot|ai\\s+agent|autonomous\\s+agent)(?!\\w)${gap(30)}\\b(?:reading|processing|parsing|summari[sz]ing|seeing|you\\s+(?:must|should|need))|\\bif\\s+you(?:\\s+are|'re)\\s+(?:an?\\s+)?(?:ai|a\\.i\\.|llm|large\\s+language\\s+model|language\\s+model|ai\\s+(?:assistant|agent|model|system)|chatbot|autonomous\\s+agent)\\s*[,:;]|\\b${AI}s?(?:\\s+(?:systems?|models?|agents?|assistants?|tools?))?\\s+(?:processing|reading|summari[sz]ing|parsing|reviewing|analy[sz]ing|screening)\\s+(?:this|these|the)\\s+\\w+\\s+(?:must|should|shall|are\\s+(?:to|required\\s+to)|need\\s+to)\\b`,
  ),
  rule(
    "address.prompt_leak",
    "block",
    "address",
    [
      "system prompt",
      "initial instructions",
      "hidden instructions",
      "instructions above",
      "prompt above",
      "developer message",
      "developer prompt",
      "preprompt",
      "pre-prompt",
    ],
    `\\b(?:reveal|print|output|repeat|show|display|tell\\s+me|give\\s+me|leak|dump|write\\s+out|paste)\\b${gap(25)}\\b(?:your|the|its)\\s+(?:full\\s+|entire\\s+|complete\\s+|original\\s+|initial\\s+|hidden\\s+|secret\\s+|exact\\s+)?(?:system\\s+prompt|initial\\s+instructions|hidden\\s+instructions|instructions\\s+above|prompt\\s+above|developer\\s+(?:message|prompt)|pre-?prompt)\\b`,
  ),
  rule(
    "address.tool_call_request",
    "alert",
    "address",
    pairs(
      ["must", "should", "to", "now", "immediately", "please"],
      ["call", "invoke", "execute", "run", "use"],
    ),
    `\\b(?:you\\s+must|you\\s+should|you\\s+need\\s+to|now|immediately|please)\\s+(?:call|invoke|execute|run|use)\\s+(?:the\\s+)?['"\`]?[a-z][a-z0-9]*(?:_[a-z0-9]+){1,5}['"\`]?\\s+(?:tool|function)\\b${gap(60)}\\b(?:with|passing|and\\s+(?:send|pass|set))\\b`,
  ),

  // --- commands
  rule(
    "command.covert_execution",
    "block",
    "command",
    [
      "silently",
      "quietly",
      ...pairs(["without"], ["asking", "confirmation", "confirming", "telling", "showing", "prompting"]),
      ...pairs(["before"], ["responding", "answering", "replying"]),
      "automatically and",
    ],
    `\\b(?:run|execute)\\b${gap(25)}\\b(?:this|the\\s+following|these)\\s+(?:command|commands|script|code|shell)\\b${lineGap(60)}\\b(?:silently|quietly|without\\s+(?:asking|confirmation|confirming|telling|showing|prompting)|before\\s+(?:responding|answering|replying)|automatically\\s+and)\\b`,
  ),
  rule(
    "command.pipe_to_shell_instruction",
    "alert",
    "command",
    ["curl", "wget"],
    `\\b(?:you\\s+must|you\\s+should|immediately|now|first|always)\\s+(?:run|execute)\\b${lineGap(40)}\\b(?:curl|wget)\\b[^\\n|]{1,200}\\|\\s*(?:sudo\\s+)?(?:ba|z)?sh\\b`,
  ),
];

/** Findings from hidden characters rather than from text rules. */
const HIDDEN_RULES = {
  tags: { rule: "hidden.tag_characters", tier: "block", category: "hidden" },
  selectors: { rule: "hidden.variation_selector_payload", tier: "block", category: "hidden" },
  bidi: { rule: "hidden.bidi_controls", tier: "alert", category: "hidden" },
  zeroWidth: { rule: "hidden.zero_width_in_word", tier: "alert", category: "hidden" },
} as const;

/** One linear pass finds the rules' anchor words; rules run only in windows around them. */
const KEYWORDS = new KeywordIndex(
  RULES.flatMap((r) => r.anchors),
  RULES.flatMap((r) => r.starts ?? []),
);

/** Words that mark a sentence as discussing injection rather than performing it. */
const META_CONTEXT =
  /\b(?:attacks?|attackers?|attacker's|injections?|injected|jailbreaks?|jailbreaking|examples?|e\.g\.|such\s+as|phrases?|detect(?:s|ed|ion|or|ors)?|malicious|adversar(?:y|ies|ial)|red[\s-]?team(?:s|ing)?|payloads?|mitigat(?:e|es|ion|ions)|defen[cs]es?|classifiers?|strings?\s+like|patterns?|warns?|beware|like|tests?|testing)\b/i;
const QUOTES = new Set(['"', "`", "\u201c", "\u201d", "\u2018", "\u2019", "\u00ab", "\u00bb", "'"]);

/**
 * True when the match looks like a quotation in a sentence about attacks: documentation,
 * security advisories and detector test cases say "ignore previous instructions" too.
 */
function isQuotedMention(text: string, start: number, end: number): boolean {
  let open = -1;
  for (let i = start - 1; i >= 0 && i >= start - 80; i--) {
    const c = text[i]!;
    if (c === "\n") break;
    if (QUOTES.has(c)) {
      // An apostrophe inside a word (don't) is not a quote.
      if (c === "'" && i > 0 && /\w/.test(text[i - 1]!)) continue;
      open = i;
      break;
    }
  }
  if (open < 0) return false;
  let close = -1;
  for (let i = end; i < text.length && i <= end + 160; i++) {
    const c = text[i]!;
    if (c === "\n") break;
    if (QUOTES.has(c)) {
      if (c === "'" && i + 1 < text.length && /\w/.test(text[i + 1]!)) continue;
      close = i;
      break;
    }
  }
  if (close < 0) return false;
  const lineStart = text.lastIndexOf("\n", open) + 1;
  const nl = text.indexOf("\n", close);
  const lineEnd = nl < 0 ? text.length : nl;
  const before = text.slice(Math.max(lineStart, open - 200), open);
  const after = text.slice(close + 1, Math.min(lineEnd, close + 200));
  return META_CONTEXT.test(before) || META_CONTEXT.test(after);
}

/** Third-person description of an attack: "tricks the model into ignoring previous instructions". */
const DESCRIBED =
  /\b(?:tells?|telling|told|instructs?|instructing|asks?|asking|tricks?|tricking|convinces?|convincing|makes?|making|gets?|getting|causes?|causing|coax(?:es|ing)?|persuades?|persuading)\s+(?:the|a|an|your|its)\s+(?:model|llm|ai|assistant|agent|chatbot|system|bot)\s+(?:(?:to|into)\s+)?$/i;

function isDescribed(text: string, start: number): boolean {
  const before = text.slice(Math.max(0, start - 60), start);
  return DESCRIBED.test(before);
}

/**
 * Whether a text is worth a classifier's opinion: the rules were unsure (an alert-tier finding,
 * or a concept match in text that discusses attacks). Block-tier findings need no second opinion.
 */
export function needsClassification(result: InjectionResult): boolean {
  return result.tier === "alert" || (result.tier === undefined && result.mentions.length > 0);
}

export interface ScanOptions {
  decode?: DecodeLimits;
}

/** Scans one string: normalise, then every rule over every layer. */
export function scanInjection(input: string, options: ScanOptions = {}): InjectionResult {
  const normalized = normalizeForScan(input, options.decode ?? DEFAULT_DECODE_LIMITS);
  const findings: InjectionFinding[] = [];
  const seen = new Set<string>();
  const add = (f: InjectionFinding) => {
    if (seen.has(f.rule)) return;
    seen.add(f.rule);
    findings.push(f);
  };
  const h = normalized.hidden;
  if (h.tagCharacters > 0) add({ ...HIDDEN_RULES.tags, layer: "tags" });
  if (h.selectorPayload > 0) add({ ...HIDDEN_RULES.selectors, layer: "selectors" });
  if (h.bidiControls > 0) add({ ...HIDDEN_RULES.bidi, layer: "text" });
  if (h.zeroWidthInWord > 0) add({ ...HIDDEN_RULES.zeroWidth, layer: "text" });

  const mentions: string[] = [];
  for (const layer of normalized.layers) {
    const text = joinWrappedLines(layer.text);
    const hits = KEYWORDS.find(text);
    if (hits !== undefined) {
      for (const r of RULES) {
        if (seen.has(r.id)) continue;
        if (ruleMatches(r, r.lineStart ? layer.text : text, hits))
          add({ rule: r.id, tier: r.tier, category: r.category, layer: layer.kind });
      }
    }
    // The phrase rules above name what they saw precisely; the concept rules catch the rest.
    const concepts = scanConcepts(text);
    for (const f of concepts.findings) if (!seen.has(f.rule)) add({ ...f, layer: layer.kind });
    for (const m of concepts.mentions) if (!mentions.includes(m)) mentions.push(m);
  }
  let tier: Tier | undefined;
  for (const f of findings) {
    if (f.tier === "block") tier = "block";
    else tier ??= "alert";
  }
  return { findings, tier, truncated: normalized.truncated, mentions };
}

/**
 * A line break inside a sentence becomes a space, so "ignore all\nprevious instructions" reads as
 * the sentence it is: rule gaps stop at line breaks, which made one inserted newline enough to
 * hide a phrase. Only wrapped prose is joined (the next line goes on with a lower-case letter, or
 * with any letter after a lower-case letter or comma): list items, headings, markup and blank
 * lines keep their breaks. Same length, so positions are unchanged.
 */
export function joinWrappedLines(text: string): string {
  let at = text.indexOf("\n");
  if (at < 0) return text;
  let out = "";
  let from = 0;
  for (; at >= 0; at = text.indexOf("\n", at + 1)) {
    const start = at > 0 && text.charCodeAt(at - 1) === 13 ? at - 1 : at;
    if (start === 0 || at + 1 >= text.length) continue;
    const prev = text.charCodeAt(start - 1);
    const next = text.charCodeAt(at + 1);
    if (prev === 10) continue; // the second break of a blank line
    const wrapped = isLower(next) || (isLetter(next) && (isLower(prev) || prev === 44));
    if (!wrapped) continue;
    out += text.slice(from, start) + (start < at ? "  " : " ");
    from = at + 1;
  }
  return from === 0 ? text : out + text.slice(from);
}

function isLower(c: number): boolean {
  return c >= 97 && c <= 122;
}

function isLetter(c: number): boolean {
  return isLower(c) || (c >= 65 && c <= 90);
}

/**
 * Runs a rule only where it can match: windows of `reach` characters around its anchors (merged),
 * or the whole text when the windows would cover most of it anyway.
 */
function ruleMatches(r: Rule, text: string, hits: KeywordHits | "all"): boolean {
  if (hits === "all") return firstReportable(r, text);
  if (!r.anchors.some((a) => hits.has(a))) return false;
  const starts = startPositions(r, text, hits);
  if (starts) return firstReportableAt(r, text, starts);
  let positions: number[] = [];
  for (const a of r.anchors) {
    const p = hits.get(a);
    if (p) positions = positions.concat(p);
  }
  if (positions.length * r.reach * 2 >= text.length) return firstReportable(r, text);
  positions.sort((a, b) => a - b);
  let start = -1;
  let end = -1;
  for (const p of positions) {
    const s = Math.max(0, p - r.reach);
    const e = Math.min(text.length, p + r.reach);
    if (s <= end) {
      end = Math.max(end, e);
      continue;
    }
    if (end > start && firstReportable(r, windowOf(text, start, end))) return true;
    start = s;
    end = e;
  }
  return end > start && firstReportable(r, windowOf(text, start, end));
}

/** A window starting at a line or word boundary, so `^`, `\\b` and lookbehinds see real context. */
function windowOf(text: string, start: number, end: number): string {
  let s = start;
  const floor = Math.max(0, start - 64);
  while (s > floor && text.charCodeAt(s - 1) !== 10) s--;
  if (s === floor && floor > 0) {
    s = start;
    while (s > floor && text.charCodeAt(s - 1) !== 32) s--;
  }
  return s === 0 && end === text.length ? text : text.slice(s, end);
}

/** The first match of a rule that is not a quoted mention in documentation about attacks. */
function firstReportable(r: Rule, text: string): boolean {
  const global = r.global;
  global.lastIndex = 0;
  let m: RegExpExecArray | null;
  // Each mention check reads a bounded context, and matches do not overlap: linear overall.
  while ((m = global.exec(text)) !== null) {
    if (m[0].length === 0) global.lastIndex++;
    const start = m.index;
    const end = start + m[0].length;
    if (!r.mentionable || (!isQuotedMention(text, start, end) && !isDescribed(text, start))) {
      global.lastIndex = 0;
      return true;
    }
  }
  global.lastIndex = 0;
  return false;
}

/** Where a rule with start words is tried (ascending), or undefined to use windows instead. */
function startPositions(r: Rule, text: string, hits: KeywordHits): Int32Array | undefined {
  if (!r.starts) return undefined;
  let n = 0;
  for (const w of r.starts) n += hits.get(w)?.length ?? 0;
  // Each try costs about as much as a regex step over a few dozen characters: past that many,
  // windows are cheaper.
  if (n * 32 >= text.length) return undefined;
  const out = new Int32Array(n);
  let k = 0;
  for (const w of r.starts) for (const p of hits.get(w) ?? []) out[k++] = p;
  // A typed array sorts numerically, without a comparator call per pair.
  return out.sort();
}

/**
 * firstReportable over the whole text when every match starts at one of `starts` (ascending):
 * the same matches in the same order, since a global scan resumes after each match and its next
 * match begins at the first position, from there, where the pattern matches.
 */
function firstReportableAt(r: Rule, text: string, starts: Int32Array): boolean {
  const sticky = r.sticky;
  let resume = 0;
  for (const p of starts) {
    if (p < resume) continue;
    sticky.lastIndex = p;
    const m = sticky.exec(text);
    if (m === null) continue;
    const end = p + m[0].length;
    if (!r.mentionable || (!isQuotedMention(text, p, end) && !isDescribed(text, p))) {
      sticky.lastIndex = 0;
      return true;
    }
    resume = Math.max(end, p + 1);
  }
  sticky.lastIndex = 0;
  return false;
}

/**
 * For tests: whether rule `id` reports a match in `text` (one layer, no normalisation) as the
 * scanner runs it (prefilter, then start words or windows) and as a global scan of the whole
 * text does, and whether the scanner tried it at its start words. Undefined for an unknown rule.
 */
export function ruleVerdicts(
  id: string,
  text: string,
): { scanned: boolean; whole: boolean; atStarts: boolean } | undefined {
  const r = RULES.find((x) => x.id === id);
  if (!r) return undefined;
  const hits = KEYWORDS.find(text);
  return {
    scanned: hits !== undefined && ruleMatches(r, text, hits),
    whole: firstReportable(r, text),
    atStarts:
      hits !== undefined &&
      hits !== "all" &&
      r.anchors.some((a) => hits.has(a)) &&
      startPositions(r, text, hits) !== undefined,
  };
}

/** The keyword prefilter alone, for the per-stage breakdown of bench/scan-cost.ts. */
export function injectionPrefilter(text: string): void {
  KEYWORDS.find(text);
}

/** Rules the scanner tries only at their start words. */
export const STARTS_RULE_IDS: readonly string[] = Object.keys(STARTS);

/** Every regex this module runs, for the catastrophic-backtracking tests. */
export function injectionPatterns(): { id: string; pattern: RegExp }[] {
  return [
    ...RULES.map((r) => ({ id: r.id, pattern: r.pattern })),
    ...(KEYWORDS.specialPattern ? [{ id: "keywords", pattern: KEYWORDS.specialPattern }] : []),
    { id: "meta_context", pattern: META_CONTEXT },
    { id: "described", pattern: DESCRIBED },
  ];
}

export const INJECTION_RULE_IDS: readonly string[] = [
  ...RULES.map((r) => r.id),
  ...Object.values(HIDDEN_RULES).map((r) => r.rule),
];
