"""Rubric templates every school gets: a teacher starts from one and edits a copy.

Plain data, so that the migration that installs them and the demo seed read
the same definitions. Levels are (points, title, descriptor).
"""

from __future__ import annotations

from typing import Any

ESSAY_RUBRIC = {
    "title": "中文作文评分标准（五项）",
    "language": "zh-hans",
    "description": "初中记叙文五项评分，每项 0–20 分，满分 100 分。",
    "criteria": [
        {
            "title": "内容切题",
            "description": "紧扣题目，中心明确，内容充实，感情真挚。",
            "max_points": 20,
            "levels": [
                (16, "一等", "切合题意，中心突出，内容充实，感情真挚。"),
                (11, "二等", "符合题意，中心明确，内容较充实，感情真实。"),
                (6, "三等", "基本符合题意，中心基本明确，内容单薄。"),
                (0, "四等", "偏离题意，中心不明确，内容空洞。"),
            ],
        },
        {
            "title": "结构清晰",
            "description": "层次分明，详略得当，首尾呼应，过渡自然。",
            "max_points": 20,
            "levels": [
                (16, "一等", "结构严谨，层次清楚，详略得当。"),
                (11, "二等", "结构完整，条理清楚。"),
                (6, "三等", "结构基本完整，条理基本清楚。"),
                (0, "四等", "结构混乱，条理不清。"),
            ],
        },
        {
            "title": "语言表达",
            "description": "语言通顺、准确、得体，句式灵活。",
            "max_points": 20,
            "levels": [
                (16, "一等", "语言流畅，表达准确生动。"),
                (11, "二等", "语言通顺，表达较准确。"),
                (6, "三等", "语言基本通顺，有少量语病。"),
                (0, "四等", "语病多，表达不清。"),
            ],
        },
        {
            "title": "文采创意",
            "description": "立意新颖，构思巧妙，善用修辞，有个性。",
            "max_points": 20,
            "levels": [
                (16, "一等", "立意新颖，构思精巧，有文采。"),
                (11, "二等", "立意较好，有一定的修辞和细节。"),
                (6, "三等", "立意一般，表达平淡。"),
                (0, "四等", "立意陈旧或模糊，毫无文采。"),
            ],
        },
        {
            "title": "书写规范",
            "description": "标点正确，没有错别字，格式规范，字数达到要求。",
            "max_points": 20,
            "levels": [
                (16, "一等", "标点正确，几乎没有错别字，字数充足。"),
                (11, "二等", "偶有错别字或标点错误。"),
                (6, "三等", "错别字较多，或字数明显不足。"),
                (0, "四等", "错别字、标点错误严重，或几乎没有写。"),
            ],
        },
    ],
}

GENERIC_ANALYTIC_RUBRIC_EN = {
    "title": "Analytic rubric (4 levels)",
    "language": "en",
    "description": "A general rubric for written answers: four criteria, four levels each.",
    "criteria": [
        {
            "title": "Ideas and content",
            "description": "Answers the task with relevant, well-developed ideas.",
            "max_points": 4,
            "levels": [
                (4, "Exemplary", "Insightful, fully relevant and thoroughly developed."),
                (3, "Proficient", "Relevant and adequately developed."),
                (2, "Developing", "Partly relevant; ideas are thin or uneven."),
                (1, "Beginning", "Little relevant content."),
            ],
        },
        {
            "title": "Organization",
            "description": "Logical order, clear paragraphs and transitions.",
            "max_points": 4,
            "levels": [
                (4, "Exemplary", "Compelling structure; every part serves the whole."),
                (3, "Proficient", "Clear beginning, middle and end; transitions work."),
                (2, "Developing", "Some order, but jumps or repetition."),
                (1, "Beginning", "Hard to follow."),
            ],
        },
        {
            "title": "Evidence and reasoning",
            "description": "Claims are supported by examples, data or sound reasoning.",
            "max_points": 4,
            "levels": [
                (4, "Exemplary", "Strong, well-chosen evidence, explained convincingly."),
                (3, "Proficient", "Adequate evidence linked to the claims."),
                (2, "Developing", "Evidence is weak, general or not explained."),
                (1, "Beginning", "Claims without support."),
            ],
        },
        {
            "title": "Language and conventions",
            "description": "Accurate, fitting language; spelling, grammar and punctuation.",
            "max_points": 4,
            "levels": [
                (4, "Exemplary", "Precise and fluent; virtually no errors."),
                (3, "Proficient", "Clear; few errors that do not hinder meaning."),
                (2, "Developing", "Frequent errors that sometimes obscure meaning."),
                (1, "Beginning", "Errors make the text hard to read."),
            ],
        },
    ],
}

GENERIC_ANALYTIC_RUBRIC_ZH = {
    "title": "通用分析型评分标准（四级）",
    "language": "zh-hans",
    "description": "适用于各类书面作答的通用评分标准：四个维度，每个维度分四级。",
    "criteria": [
        {
            "title": "内容与观点",
            "description": "紧扣题目，观点明确，内容充实。",
            "max_points": 4,
            "levels": [
                (4, "优秀", "观点鲜明深刻，内容充实，完全切题。"),
                (3, "良好", "观点明确，内容较充实，切题。"),
                (2, "合格", "观点基本明确，内容单薄或不均衡。"),
                (1, "待提高", "观点模糊，内容空洞或偏题。"),
            ],
        },
        {
            "title": "组织结构",
            "description": "层次清楚，段落分明，过渡自然。",
            "max_points": 4,
            "levels": [
                (4, "优秀", "结构严谨，层层推进，浑然一体。"),
                (3, "良好", "结构完整，条理清楚。"),
                (2, "合格", "有一定条理，但有跳跃或重复。"),
                (1, "待提高", "结构混乱，难以理解。"),
            ],
        },
        {
            "title": "论证与证据",
            "description": "用事例、数据或合理推理支撑观点。",
            "max_points": 4,
            "levels": [
                (4, "优秀", "证据充分恰当，论证有力。"),
                (3, "良好", "证据较充分，与观点相关。"),
                (2, "合格", "证据薄弱或笼统，缺少分析。"),
                (1, "待提高", "只有结论，没有依据。"),
            ],
        },
        {
            "title": "语言与规范",
            "description": "语言准确得体；字词、语法、标点规范。",
            "max_points": 4,
            "levels": [
                (4, "优秀", "语言准确流畅，几乎没有错误。"),
                (3, "良好", "语言通顺，偶有错误但不影响理解。"),
                (2, "合格", "错误较多，有时影响理解。"),
                (1, "待提高", "错误严重，难以阅读。"),
            ],
        },
    ],
}

TEMPLATES: list[dict[str, Any]] = [
    ESSAY_RUBRIC,
    GENERIC_ANALYTIC_RUBRIC_ZH,
    GENERIC_ANALYTIC_RUBRIC_EN,
]


def rubric_install(
    spec: dict[str, Any],
    *,
    rubric_model: Any,
    criterion_model: Any,
    level_model: Any,
    owner: Any = None,
    is_template: bool = True,
) -> Any:
    """Create the rubric a spec describes, unless one of that title, owner and kind exists.
    Takes the models as arguments so that a migration can pass its historical ones."""
    existing = rubric_model.objects.filter(
        title=spec["title"], is_template=is_template, owner=owner
    ).first()
    if existing:
        return existing
    rubric = rubric_model.objects.create(
        title=spec["title"],
        description=spec["description"],
        language=spec["language"],
        owner=owner,
        is_template=is_template,
    )
    for order, c in enumerate(spec["criteria"], start=1):
        criterion = criterion_model.objects.create(
            rubric=rubric,
            order=order,
            title=c["title"],
            description=c["description"],
            max_points=c["max_points"],
        )
        level_model.objects.bulk_create(
            level_model(criterion=criterion, order=i, points=points, title=title, descriptor=text)
            for i, (points, title, text) in enumerate(c["levels"], start=1)
        )
    return rubric
