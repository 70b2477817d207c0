"""The JMeter plans of jmeter/, written from the definitions below.

    .venv/bin/python jmeter/plans.py          rewrite jmeter/*.jmx
    .venv/bin/python jmeter/plans.py --check  exit 1 if a committed plan differs

The plans use only elements that JMeter 2.13 (Debian's) already has, and that a current 5.x
still reads: HTTP Request Defaults, Header Manager, CSV Data Set, Thread Group with a duration,
Once Only Controller, HTTP Request (raw JSON bodies), Regular Expression Extractor (2.13 has no
JSON extractor), Response Assertion and Uniform Random Timer. Every knob is a property
(-Jname=value): host, port, threads, rampup, duration, think_ms, data (the CSV folder).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent


def prop(kind: str, name: str, value: object) -> str:
    return f'<{kind} name="{name}">{escape(str(value))}</{kind}>'


def s(name: str, value: object) -> str:
    return prop("stringProp", name, value)


def b(name: str, value: bool) -> str:
    return prop("boolProp", name, "true" if value else "false")


def element(tag: str, gui: str, name: str, body: list[str], children: list[str] | None = None) -> str:
    """An element and the hashTree of its children."""
    head = f'<{tag} guiclass={quoteattr(gui)} testclass={quoteattr(tag)} testname={quoteattr(name)} enabled="true">'
    return head + "".join(body) + f"</{tag}><hashTree>" + "".join(children or []) + "</hashTree>"


def arguments(raw_body: str | None = None) -> str:
    inner = ""
    if raw_body is not None:
        inner = (
            '<elementProp name="" elementType="HTTPArgument">'
            + b("HTTPArgument.always_encode", False)
            + s("Argument.value", raw_body)
            + s("Argument.metadata", "=")
            + "</elementProp>"
        )
    return (
        '<elementProp name="HTTPsampler.Arguments" elementType="Arguments" guiclass="HTTPArgumentsPanel" '
        'testclass="Arguments" testname="User Defined Variables" enabled="true">'
        f'<collectionProp name="Arguments.arguments">{inner}</collectionProp></elementProp>'
    )


def defaults() -> str:
    return element(
        "ConfigTestElement",
        "HttpDefaultsGui",
        "HTTP Request Defaults",
        [
            arguments(),
            s("HTTPSampler.domain", "${__P(host,127.0.0.1)}"),
            s("HTTPSampler.port", "${__P(port,8080)}"),
            s("HTTPSampler.protocol", "http"),
            s("HTTPSampler.contentEncoding", "utf-8"),
            s("HTTPSampler.implementation", "HttpClient4"),
            s("HTTPSampler.connect_timeout", "5000"),
            s("HTTPSampler.response_timeout", "30000"),
        ],
    )


def headers(name: str, pairs: dict[str, str]) -> str:
    entries = "".join(
        '<elementProp name="" elementType="Header">'
        + s("Header.name", k)
        + s("Header.value", v)
        + "</elementProp>"
        for k, v in pairs.items()
    )
    return element(
        "HeaderManager",
        "HeaderPanel",
        name,
        [f'<collectionProp name="HeaderManager.headers">{entries}</collectionProp>'],
    )


def csv(name: str, filename: str, variables: str = "") -> str:
    """Rows of ${data}/<filename>; the header line names the variables unless ``variables``."""
    return element(
        "CSVDataSet",
        "TestBeanGUI",
        name,
        [
            s("delimiter", ","),
            s("fileEncoding", "UTF-8"),
            s("filename", "${__P(data,jmeter/data)}/" + filename),
            b("quotedData", False),
            b("recycle", True),
            s("shareMode", "shareMode.all"),
            b("stopThread", False),
            s("variableNames", variables),
        ],
    )


def extract(variable: str, regex: str) -> str:
    return element(
        "RegexExtractor",
        "RegexExtractorGui",
        f"extract {variable}",
        [
            s("RegexExtractor.useHeaders", "false"),
            s("RegexExtractor.refname", variable),
            s("RegexExtractor.regex", regex),
            s("RegexExtractor.template", "$1$"),
            s("RegexExtractor.default", f"NO_{variable.upper()}"),
            s("RegexExtractor.match_number", "1"),
        ],
    )


def expect_status(code: int) -> str:
    return element(
        "ResponseAssertion",
        "AssertionGui",
        f"status {code}",
        [
            f'<collectionProp name="Asserion.test_strings"><stringProp name="{code}">{code}</stringProp></collectionProp>',
            s("Assertion.test_field", "Assertion.response_code"),
            b("Assertion.assume_success", True),  # a 4xx we expect is a success
            prop("intProp", "Assertion.test_type", 8),  # equals
        ],
    )


@dataclass
class Request:
    label: str
    method: str
    path: str
    body: str | None = None
    status: int = 200
    children: list[str] = field(default_factory=list)

    def xml(self) -> str:
        body = [
            arguments(self.body),
            s("HTTPSampler.path", self.path),
            s("HTTPSampler.method", self.method),
            b("HTTPSampler.follow_redirects", False),
            b("HTTPSampler.use_keepalive", True),
        ]
        if self.body is not None:
            body.append(b("HTTPSampler.postBodyRaw", True))
        return element(
            "HTTPSamplerProxy",
            "HttpTestSampleGui",
            self.label,
            body,
            [expect_status(self.status), *self.children],
        )


def think_time() -> str:
    return element(
        "UniformRandomTimer",
        "UniformRandomTimerGui",
        "Think time",
        [s("ConstantTimer.delay", "${__P(think_ms,200)}"), s("RandomTimer.range", "${__P(think_ms,200)}")],
    )


def thread_group(name: str, children: list[str], threads: int) -> str:
    loop = (
        '<elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel" '
        'testclass="LoopController" testname="Loop Controller" enabled="true">'
        + b("LoopController.continue_forever", False)
        + prop("intProp", "LoopController.loops", -1)
        + "</elementProp>"
    )
    return element(
        "ThreadGroup",
        "ThreadGroupGui",
        name,
        [
            s("ThreadGroup.on_sample_error", "continue"),
            loop,
            s("ThreadGroup.num_threads", f"${{__P(threads,{threads})}}"),
            s("ThreadGroup.ramp_time", "${__P(rampup,30)}"),
            b("ThreadGroup.scheduler", True),
            s("ThreadGroup.duration", "${__P(duration,120)}"),
            s("ThreadGroup.delay", "0"),
            prop("longProp", "ThreadGroup.start_time", 0),
            prop("longProp", "ThreadGroup.end_time", 0),
        ],
        children,
    )


def once(name: str, children: list[str]) -> str:
    return element("OnceOnlyController", "OnceOnlyControllerGui", name, [], children)


def plan(title: str, comment: str, children: list[str]) -> str:
    body = [
        s("TestPlan.comments", comment),
        b("TestPlan.functional_mode", False),
        b("TestPlan.serialize_threadgroups", False),
        '<elementProp name="TestPlan.user_defined_variables" elementType="Arguments" guiclass="ArgumentsPanel" '
        'testclass="Arguments" testname="User Defined Variables" enabled="true">'
        '<collectionProp name="Arguments.arguments"/></elementProp>',
        s("TestPlan.user_define_classpath", ""),
    ]
    tree = element("TestPlan", "TestPlanGui", title, body, [defaults(), *children])
    header = f"<!-- {escape(title)}: {escape(comment)} Written by jmeter/plans.py; edit that, not this. -->\n"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + header
        + '<jmeterTestPlan version="1.2" properties="2.8" jmeter="2.13"><hashTree>'
        + tree
        + "</hashTree></jmeterTestPlan>\n"
    )


JSON = {"Content-Type": "application/json", "Accept": "application/json"}
LOGIN = Request(
    "POST /api/auth/login",
    "POST",
    "/api/auth/login",
    body='{"username": "${username}", "password": "${password}"}',
    children=[extract("token", r'"access_token":\s*"([^"]+)"')],
)
AUTHORISED = headers("JSON and bearer token", {**JSON, "Authorization": "Bearer ${token}"})


def signed_in(*steps: str) -> list[str]:
    """A customer's thread: log in once (users.csv), then ``steps`` with the bearer token."""
    return [headers("JSON", JSON), once("Log in once", [LOGIN.xml()]), AUTHORISED, *steps, think_time()]


def catalog() -> str:
    return plan(
        "Catalog browsing",
        "anonymous catalog reads: list pages with filters and sorts, product detail, categories.",
        [
            csv("Product ids", "products.csv"),
            csv("Category ids", "categories.csv"),
            thread_group(
                "Shoppers browsing",
                [
                    headers("JSON", {"Accept": "application/json"}),
                    Request(
                        "GET /api/products/", "GET", "/api/products/?page=${__Random(1,20)}&page_size=20"
                    ).xml(),
                    Request(
                        "GET /api/products/?category&sort",
                        "GET",
                        "/api/products/?category=${category_id}&sort=-rating&in_stock=true",
                    ).xml(),
                    Request("GET /api/products/{id}/", "GET", "/api/products/${product_id}/").xml(),
                    Request("GET /api/categories/", "GET", "/api/categories/").xml(),
                    think_time(),
                ],
                threads=32,
            ),
        ],
    )


def orders() -> str:
    return plan(
        "Order history",
        "customers with a long history page through their orders (GET /api/orders/).",
        [
            csv("Customers", "users.csv"),
            thread_group(
                "Customers reading their orders",
                signed_in(
                    Request(
                        "GET /api/orders/", "GET", "/api/orders/?page=${__Random(1,3)}&page_size=20"
                    ).xml(),
                ),
                threads=16,
            ),
        ],
    )


def login() -> str:
    return plan(
        "Login",
        "logins at a steady rate (argon2 hashing: the costliest request per call); the target must allow "
        "the rate (AUTH_RATE_LIMIT, nginx's limit_req on /api/auth/).",
        [
            csv("Customers", "users.csv"),
            thread_group(
                "Customers logging in",
                [headers("JSON", JSON), LOGIN.xml(), think_time()],
                threads=4,
            ),
        ],
    )


def journey() -> str:
    return plan(
        "Shopping journey",
        "log in, browse, add to cart, check out (Idempotency-Key), pay.",
        [
            csv("Customers", "users.csv"),
            csv("Product ids", "products.csv"),
            thread_group(
                "Buyers",
                signed_in(
                    Request(
                        "GET /api/products/", "GET", "/api/products/?page=${__Random(1,20)}&page_size=20"
                    ).xml(),
                    Request("GET /api/products/{id}/", "GET", "/api/products/${product_id}/").xml(),
                    Request(
                        "POST /api/cart/items/",
                        "POST",
                        "/api/cart/items/",
                        body='{"product_id": ${product_id}, "quantity": 1}',
                        status=201,
                    ).xml(),
                    Request(
                        "POST /api/orders/",
                        "POST",
                        "/api/orders/",
                        body="{}",
                        status=201,
                        children=[
                            headers("Idempotency-Key", {"Idempotency-Key": "${__UUID()}"}),
                            extract("order_id", r'^\{"id":\s*(\d+)'),
                        ],
                    ).xml(),
                    Request(
                        "POST /api/orders/{id}/payments/",
                        "POST",
                        "/api/orders/${order_id}/payments/",
                        body='{"payment_method": "card", "token": "tok_visa"}',
                        status=202,
                    ).xml(),
                ),
                threads=16,
            ),
        ],
    )


PLANS = {"catalog": catalog, "orders": orders, "login": login, "journey": journey}


def main(argv: list[str]) -> int:
    stale = []
    for name, build in PLANS.items():
        path = HERE / f"{name}.jmx"
        text = build()
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run jmeter/plans.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
