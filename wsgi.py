from ecommerce import create_app

app = create_app()
